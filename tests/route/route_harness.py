"""Real servers on loopback for the routing tests and benchmark: a test PACS (Orthanc), a node
(`nstage route serve` as a user starts it), storescu, and study variants made from a synthetic study.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from nstage.route.config import orthanc_config, write_orthanc_config
from nstage.route.orthanc_api import OrthancClient
from nstage.route.orthanc_process import OrthancProcess
from nstage.route.queue import JobQueue
from nstage.route.settings import CallingPeer, free_port

REPO = Path(__file__).resolve().parents[2]
PACS_AET = "TESTPACS"
NODE_AET = "NSTAGE"

# Fast timings for tests: short stable age, short backoffs (config/route.json holds the real ones).
FAST = {"stable_age_s": 2, "poll_interval_s": 0.3,
        "pipeline": {"retry_backoff": {"initial_s": 1, "factor": 2.0, "max_s": 4}},
        "send": {"retry_backoff": {"initial_s": 1, "factor": 2.0, "max_s": 8}, "connect_timeout_s": 3, "dimse_timeout_s": 30},
        "worker": {"restart_delay_s": {"initial_s": 0.5, "factor": 2.0, "max_s": 4}, "stop_timeout_s": 15}}


def orthanc_available() -> bool:
    return bool(shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")) and bool(shutil.which("storescu"))


def needs_orthanc() -> pytest.MarkDecorator:
    """The skip mark of tests that need real servers (Orthanc and storescu)."""
    return pytest.mark.skipif(not orthanc_available(), reason="Orthanc (Debian package `orthanc`) or storescu (`dcmtk`) is not installed: "
                                                              "run scripts/install-system-deps.sh")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def fast_route_config(path: Path, **overrides: Any) -> Path:
    cfg = json.loads((REPO / "config" / "route.json").read_text())
    for k, v in {**FAST, **overrides}.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                cfg[k][k2] = v2 if not isinstance(v2, dict) else {**cfg[k].get(k2, {}), **v2}
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg, indent=1))
    return path


class TestPacs:
    """A second Orthanc acting as the hospital PACS: accepts C-STORE from the node's AE title only."""

    __test__ = False  # not a pytest class

    def __init__(self, work: Path, allowed_aet: str = NODE_AET, dicom_port: int | None = None) -> None:
        self.work = Path(work)
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.client = OrthancClient(f"http://127.0.0.1:{self.http_port}", "pacs", "pacs-test-password")
        cfg = orthanc_config(name="testpacs", aet=PACS_AET, dicom_port=self.dicom_port, http_port=self.http_port, storage_dir=self.work / "storage",
                             index_dir=self.work / "storage", users={"pacs": "pacs-test-password"}, allowed=[CallingPeer(allowed_aet, "127.0.0.1")],
                             stable_age_s=60, unknown_sop_class_accepted=True)
        write_orthanc_config(self.work / "orthanc.json", cfg)
        self.process = OrthancProcess(self.work / "orthanc.json", self.work / "orthanc.log", self.client)

    @property
    def dest(self) -> str:
        return f"{PACS_AET}@127.0.0.1:{self.dicom_port}"

    def start(self) -> TestPacs:
        os.environ.setdefault("TCP_NODELAY", "1")
        self.process.start(30)
        return self

    def stop(self) -> None:
        self.process.stop(15)

    def instances_of_study(self, study_uid: str) -> list[dict[str, str]]:
        """Modality, SOP class and SOP Instance UID of each instance the PACS holds for a study."""
        out = []
        for sid in self.client.find_studies(study_uid):
            for inst in self.client._get(f"/studies/{sid}/instances").json():
                tags = self.client.instance_tags(inst["ID"])
                out.append({"Modality": tags.get("Modality", ""), "SOPClassUID": tags.get("SOPClassUID", ""),
                            "SOPInstanceUID": tags.get("SOPInstanceUID", "")})
        return out


class Node:
    """`nstage route serve` in a child process, as a hospital would run it."""

    def __init__(self, work: Path, dest: str, config: Path, models: Path | None = None, aet: str = NODE_AET, allow: str = PACS_AET,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.work = Path(work)
        self.port = free_port()
        self.http_port = free_port()
        self.dest = dest
        self.config = config
        self.models = models or REPO / "models"
        self.aet = aet
        self.allow = allow
        self.extra_args = tuple(extra_args)  # more `serve` options, e.g. ("--workers", "2")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Node:
        cmd = [sys.executable, "-m", "nstage.cli", "route", "serve", "--aet", self.aet, "--port", str(self.port), "--dest", self.dest,
               "--work", str(self.work), "--allow", f"{self.allow}@127.0.0.1", "--http-port", str(self.http_port), "--config", str(self.config),
               "--models", str(self.models), *self.extra_args]
        self.work.mkdir(parents=True, exist_ok=True)
        self.stderr = open(self.work / "serve.stderr", "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.stderr, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: self.worker_pid() is not None or self.proc.poll() is not None, 60, "the node's worker")
        if self.proc.poll() is not None:
            raise RuntimeError(f"nstage route serve exited {self.proc.returncode}: {self.stderr_text()[-2000:]}")
        return self

    def worker_pid(self) -> int | None:
        try:
            pid = int((self.work / "worker.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        """SIGKILL the serve process, as a power cut or `kill -9` would (its children die with it)."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        self.proc = None

    def jobs(self) -> list:
        path = self.work / "queue.sqlite"
        if not path.is_file():
            return []
        q = JobQueue(path, readonly=True)
        try:
            return q.jobs()
        finally:
            q.close()

    def outputs(self, job_id: int) -> list:
        q = JobQueue(self.work / "queue.sqlite", readonly=True)
        try:
            return q.outputs(job_id)
        finally:
            q.close()

    def log_text(self) -> str:
        """The node's log file (supervisor and worker lines; the same lines also go to serve.stderr)."""
        p = self.work / "logs" / "node.log"
        return p.read_text(errors="replace") if p.is_file() else ""

    def stderr_text(self) -> str:
        p = self.work / "serve.stderr"
        return p.read_text(errors="replace") if p.is_file() else ""


def processes_of(work: Path) -> list[int]:
    """Process ids whose command line names the work folder (serve, Orthanc, the worker, pipeline runs)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().replace(b"\0", b" ").find(str(work).encode()) >= 0 and _alive(int(p.name)):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of the serve process counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def send_study(folder: Path, port: int, calling_aet: str = PACS_AET, called_aet: str = NODE_AET) -> subprocess.CompletedProcess:
    """storescu every file of a study folder to a node (as the PACS's auto-routing rule would)."""
    cmd = ["storescu", "-aet", calling_aet, "-aec", called_aet, "+sd", "+r", "127.0.0.1", str(port), str(folder)]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=120)


def study_uid_of(folder: Path) -> str:
    first = next(p for p in sorted(Path(folder).rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


def patient_identity(folder: Path) -> tuple[str, str]:
    first = next(p for p in sorted(Path(folder).rglob("*")) if p.is_file())
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    return str(ds.PatientName), str(ds.PatientID)


def study_variant(src: Path, dest: Path, keep_modalities: tuple[str, ...] = ("CT", "PT"),
                  edit: Callable[[pydicom.Dataset], None] | None = None) -> Path:
    """A copy of a study as a new study (new study, series and instance UIDs), keeping some modalities and editing datasets."""
    study_uid = generate_uid()
    series_uids: dict[str, str] = {}
    frame_uids: dict[str, str] = {}
    dest.mkdir(parents=True, exist_ok=True)
    for n, p in enumerate(sorted(q for q in Path(src).rglob("*") if q.is_file())):
        ds = pydicom.dcmread(p)
        if ds.Modality not in keep_modalities:
            continue
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uids.setdefault(ds.SeriesInstanceUID, generate_uid())
        if "FrameOfReferenceUID" in ds:
            ds.FrameOfReferenceUID = frame_uids.setdefault(ds.FrameOfReferenceUID, generate_uid())
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if edit is not None:
            edit(ds)
        ds.save_as(dest / f"{n:05d}.dcm", enforce_file_format=True)
    return dest
