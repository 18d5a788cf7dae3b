"""A real MONAI Label server (`.venv-label/bin/monailabel start_server --app label_app`) on loopback for the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pydicom
import requests

from nstage.route.settings import free_port
from scripts.review import DICOMWEB_PLUGIN, with_dicomweb  # noqa: F401 - DICOMWEB_PLUGIN re-exported for the label tests

REPO = Path(__file__).resolve().parents[2]
MONAILABEL = REPO / ".venv-label" / "bin" / "monailabel"
LABEL_PYTHON = REPO / ".venv-label" / "bin" / "python"


class LabelServer:
    __test__ = False

    def __init__(self, studies: str, log: Path, conf: dict[str, str] | None = None, env: dict[str, str] | None = None) -> None:
        self.studies = studies
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log)
        self.conf = conf or {}
        # scoring is run on demand by the strategy (one registration at a time on a 2-core machine)
        self.env = {**os.environ, "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> LabelServer:
        cmd = [str(MONAILABEL), "start_server", "--app", str(REPO / "label_app"), "--studies", self.studies,
               "--host", "127.0.0.1", "--port", str(self.port)]
        for k, v in self.conf.items():
            cmd += ["--conf", k, v]
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - the server's output file, closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"monailabel exited {self.proc.returncode}: {self.log_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"monailabel did not answer /info/ in {timeout_s:.0f} s: {self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        app_log = REPO / "label_app" / "logs" / "app.log"
        return text + (app_log.read_text(errors="replace") if app_log.is_file() else "")

    # -- API ------------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> requests.Response:
        r = requests.get(self.url + path, timeout=kw.pop("timeout", 60), **kw)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:2000]}"
        return r

    def post(self, path: str, timeout: float = 900, **kw: Any) -> requests.Response:
        r = requests.post(self.url + path, timeout=timeout, **kw)
        assert r.status_code == 200, f"POST {path}: {r.status_code} {r.text[:2000]}\n{self.log_text()[-3000:]}"
        return r

    def put(self, path: str, **kw: Any) -> requests.Response:
        r = requests.put(self.url + path, timeout=120, **kw)
        assert r.status_code == 200, f"PUT {path}: {r.status_code} {r.text[:2000]}\n{self.log_text()[-3000:]}"
        return r

    def infer(self, image: str, out_label: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /infer/stations as the viewers do (multipart answer: the label file and the JSON); the label to out_label."""
        r = self.post(f"/infer/stations?image={image}", data={"params": json.dumps(params or {})})
        parts = multipart(r)
        out_label.write_bytes(parts["image"])
        return json.loads(parts["params"])


def multipart(r: requests.Response) -> dict[str, bytes]:
    """The parts of a multipart/form-data answer by field name."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + r.headers["content-type"].encode() + b"\r\n\r\n" + r.content)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in msg.iter_parts()}


def dicomweb_pacs(work: Path):
    """The routing tests' test PACS (a real Orthanc) with the Debian `orthanc-dicomweb` plugin enabled, not started;
    `pacs.dicomweb` is its DICOMweb root."""
    from nstage.route.config import write_orthanc_config
    from tests.route.route_harness import TestPacs

    pacs = TestPacs(work)
    write_orthanc_config(pacs.work / "orthanc.json", with_dicomweb(json.loads((pacs.work / "orthanc.json").read_text())))
    pacs.dicomweb = f"{pacs.client.url}/dicom-web"
    return pacs


def cut_ct_below_station_1(src_case: Path, dst_case: Path, margin_mm: float = 0.0) -> int:
    """Copy a synthetic study with a CT that stops `margin_mm` below station 1 (1R/1L, from truth_stations.nii.gz):
    the supraclavicular stations lie outside it, as in a CT that does not reach the lung apices. Returns the slices dropped."""
    import nibabel as nib
    import numpy as np

    from nstage.stations import by_name

    truth = nib.load(src_case / "truth_stations.nii.gz")
    labels = np.asarray(truth.dataobj)
    station1 = np.isin(labels, [by_name()["1R"].label, by_name()["1L"].label])
    k_low = int(np.where(station1.any(axis=(0, 1)))[0].min())
    z_low = float((truth.affine @ [0, 0, k_low, 1])[2])  # NIfTI's S is DICOM's LPS z
    shutil.copytree(src_case / "dicom", dst_case / "dicom")
    dropped = 0
    for f in sorted((dst_case / "dicom" / "ct").iterdir()):
        if float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) >= z_low - margin_mm:
            f.unlink()
            dropped += 1
    return dropped
