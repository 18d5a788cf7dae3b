"""`make review`: a synthetic PET/CT study in a real PACS (Orthanc with DICOMweb) and the MONAI Label server, for a
person to review the station map in OHIF on this machine's browser.

    .venv/bin/python scripts/review.py [--work data/review] [--port 8000] [--preset small|clinical] [--seed 2026]

Writes a synthetic study once (`nstage synth`, instance numbers then set from head to feet as a scanner
numbers an axial series), starts Orthanc on loopback with its DICOMweb plugin and a one-off password,
stores the study, starts `.venv-label/bin/monailabel start_server --app label_app` on the PACS with that
password (MONAI_LABEL_DICOMWEB_USERNAME / _PASSWORD, used by the datastore and the viewer's proxy) and
prints the OHIF addresses. Ctrl-C stops both. The steps in the viewer: docs/monai-label.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nstage.route.config import orthanc_config, write_orthanc_config  # noqa: E402
from nstage.route.orthanc_api import OrthancClient  # noqa: E402
from nstage.route.orthanc_process import OrthancProcess  # noqa: E402
from nstage.route.settings import free_port  # noqa: E402

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
MONAILABEL = REPO / ".venv-label" / "bin" / "monailabel"
USER = "review"


def with_dicomweb(config: dict[str, Any]) -> dict[str, Any]:
    """An Orthanc configuration with the Debian `orthanc-dicomweb` plugin serving DICOMweb at /dicom-web/."""
    return {**config, "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"}}


def copy_numbered_head_to_feet(src: Path, dst: Path) -> Path:
    """A copy of a DICOM study folder whose instance numbers rise from head to feet in each series, as scanners number
    an axial series (`nstage synth` numbers from the feet up; for such a CT, the OHIF that monailabel 0.8.5 ships
    downloads an edited SEG with its slices reversed: docs/monai-label.md)."""
    shutil.copytree(src, dst)
    for series in sorted({f.parent for f in dst.rglob("*") if f.is_file()}):
        files = [f for f in series.iterdir() if f.is_file()]
        height = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files}
        for number, f in enumerate(sorted(files, key=lambda f: -height[f]), start=1):
            ds = pydicom.dcmread(f)
            ds.InstanceNumber = number
            ds.save_as(f, enforce_file_format=True)
    return dst


def synthetic_study(work: Path, preset: str, seed: int) -> Path:
    """The study's DICOM folder (written on the first run)."""
    study = work / "study"
    if not (study / ".complete").is_file():
        shutil.rmtree(work / "synth", ignore_errors=True)
        shutil.rmtree(study, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(work / "synth"), "--cases", "1", "--seed", str(seed),
                        "--preset", preset], cwd=REPO, check=True)
        copy_numbered_head_to_feet(work / "synth" / "case_0000" / "dicom", study)
        (study / ".complete").write_text("")
    return study


def start_pacs(work: Path, password: str) -> tuple[OrthancProcess, str]:
    """Orthanc on loopback with DICOMweb, fresh storage; (process, REST URL)."""
    pacs = work / "pacs"
    shutil.rmtree(pacs, ignore_errors=True)
    pacs.mkdir(parents=True)
    port = free_port()
    client = OrthancClient(f"http://127.0.0.1:{port}", USER, password)
    cfg = orthanc_config(name="review", aet="REVIEWPACS", dicom_port=free_port(), http_port=port, storage_dir=pacs / "storage",
                         index_dir=pacs / "storage", users={USER: password}, allowed=[], stable_age_s=60, unknown_sop_class_accepted=True)
    write_orthanc_config(pacs / "orthanc.json", with_dicomweb(cfg))
    process = OrthancProcess(pacs / "orthanc.json", pacs / "orthanc.log", client)
    process.start(60)
    return process, client.url


def store_study(url: str, password: str, study: Path) -> str:
    """POST every file of the study to Orthanc; its StudyInstanceUID."""
    files = sorted(f for f in study.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in files:
        requests.post(f"{url}/instances", data=f.read_bytes(), auth=(USER, password), timeout=60).raise_for_status()
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def start_server(work: Path, dicomweb: str, password: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": password,
           "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "cache")}
    log = open(work / "monailabel.log", "ab")  # noqa: SIM115 - the server's output for as long as it runs
    proc = subprocess.Popen([str(MONAILABEL), "start_server", "--app", str(REPO / "label_app"), "--studies", dicomweb,
                             "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MONAI Label server stopped (status {proc.returncode}); see {work / 'monailabel.log'}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/info/", timeout=5).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"the MONAI Label server did not answer in 300 s; see {work / 'monailabel.log'}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or `kill` (a background job starts with SIGINT ignored)
        signal.signal(sig, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "data" / "review", help="study, PACS storage, server cache and logs")
    ap.add_argument("--port", type=int, default=8000, help="the MONAI Label server's port (OHIF's panel proposes 8000)")
    ap.add_argument("--preset", default="small", choices=("small", "clinical"), help="nstage synth preset of the study")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    missing = [str(p) for p in (MONAILABEL, DICOMWEB_PLUGIN) if not p.exists()]
    if missing:
        print(f"error: {', '.join(missing)} missing: run `make setup`", file=sys.stderr)
        return 1
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    study = synthetic_study(work, args.preset, args.seed)
    password = secrets.token_urlsafe(16)
    pacs, url = start_pacs(work, password)
    server = None
    try:
        uid = store_study(url, password, study)
        server = start_server(work, f"{url}/dicom-web", password, args.port)
        base = f"http://127.0.0.1:{args.port}"
        print(json.dumps({"study": uid, "pacs": url, "server": base}, indent=1))
        print(f"\nOHIF, MONAI Label mode (connect the panel to {base}/, run `stations`):\n  {base}/ohif/monai-label?StudyInstanceUIDs={uid}")
        print(f"OHIF, Segmentation mode (open the station SEG, correct, Download DICOM SEG):\n  {base}/ohif/segmentation?StudyInstanceUIDs={uid}")
        print(f"OHIF study list (Upload the corrected SEG):\n  {base}/ohif/")
        print(f"Logs: {work / 'monailabel.log'}, {work / 'pacs' / 'orthanc.log'}. Ctrl-C stops both servers.", flush=True)
        while server.poll() is None:
            time.sleep(1)
        print(f"error: the MONAI Label server stopped (status {server.returncode}); see {work / 'monailabel.log'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            stop_server(server)
        pacs.stop(15)


if __name__ == "__main__":
    sys.exit(main())
