"""`nstage route serve`: the node's own Orthanc and its worker, supervised in the foreground.

Start: work folder, credentials (0600), generated Orthanc configuration (0600), WORK/node.json;
Orthanc, waited for until its REST API answers; the worker (`python -m nstage.route.worker`).
Run: a worker or an Orthanc that dies is restarted (after a growing delay when it keeps dying).
Stop (SIGTERM or SIGINT): the worker first (it leaves its job resumable), then Orthanc; exit 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from nstage.errors import InputError
from nstage.route.backoff import Backoff
from nstage.route.config import (
    load_or_create_credentials,
    orthanc_config,
    write_orthanc_config,
)
from nstage.route.logs import configure_node_logging
from nstage.route.orthanc_api import OrthancClient
from nstage.route.orthanc_process import OrthancProcess, orthanc_binary
from nstage.route.proc import die_with_parent
from nstage.route.queue import JobQueue
from nstage.route.sender import storescu_binary
from nstage.route.settings import NodeSettings

log = logging.getLogger("nstage.route")
STABLE_RUN_S = 60.0  # a child that ran this long before dying restarts without delay


def check_port_free(port: int, host: str, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as Orthanc binds: connections of a node killed a moment ago (TIME_WAIT) do not block a restart; a listener does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise InputError(f"{what} {port} is in use ({e.strerror}): stop what listens there or choose another port") from e


def prepare(settings: NodeSettings) -> tuple[Path, OrthancClient]:
    """Work folder, credentials, Orthanc configuration and node.json; returns (config path, client)."""
    orthanc_binary(settings.orthanc_binary)
    storescu_binary()
    check_port_free(settings.port, "0.0.0.0", "DICOM port --port")
    check_port_free(settings.http_port, "127.0.0.1", "REST port --http-port")
    for d in (settings.work, settings.jobs_dir, settings.logs_dir, settings.work / "inputs", settings.orthanc_dir / "storage"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.work, 0o700)
    user, password = load_or_create_credentials(settings.credentials_path, settings.http_user)
    cfg = orthanc_config(name=f"nstage-{settings.aet}", aet=settings.aet, dicom_port=settings.port, http_port=settings.http_port,
                         storage_dir=settings.orthanc_dir / "storage", index_dir=settings.orthanc_dir / "storage", users={user: password},
                         allowed=settings.allowed, stable_age_s=settings.stable_age_s,
                         unknown_sop_class_accepted=settings.unknown_sop_class_accepted, maximum_storage_mb=settings.maximum_storage_mb)
    config_path = write_orthanc_config(settings.orthanc_dir / "orthanc.json", cfg)
    settings.save()
    JobQueue(settings.queue_path).close()  # create the database before the status command reads it
    return config_path, OrthancClient(settings.http_url, user, password)


class Child:
    """A supervised child process with a restart delay that grows while it keeps dying young."""

    def __init__(self, name: str, backoff: Backoff) -> None:
        self.name = name
        self.backoff = backoff
        self.started_at = 0.0
        self.quick_deaths = 0
        self.restart_at: float | None = None

    def died(self, now: float) -> float:
        self.quick_deaths = self.quick_deaths + 1 if now - self.started_at < STABLE_RUN_S else 0
        delay = self.backoff.delay(self.quick_deaths) if self.quick_deaths else 0.0
        self.restart_at = now + delay
        return delay


class Supervisor:
    def __init__(self, settings: NodeSettings) -> None:
        self.s = settings
        self.stop_event = threading.Event()
        self.worker: subprocess.Popen | None = None
        self.orthanc: OrthancProcess | None = None

    def _start_worker(self) -> None:
        cmd = [sys.executable, "-m", "nstage.route.worker", str(self.s.work)]
        self.worker = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        (self.s.work / "worker.pid").write_text(str(self.worker.pid))
        log.info("worker started (pid %d)", self.worker.pid)

    def _stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(self.s.worker_stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop within %.0f s; killing it", self.s.worker_stop_timeout_s)
            self.worker.kill()
            self.worker.wait()

    def run(self) -> int:
        lock = open(self.s.work / "serve.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise InputError(f"another `nstage route serve` is running on {self.s.work}; stop it first") from e
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        config_path, client = prepare(self.s)
        self.orthanc = OrthancProcess(config_path, self.s.logs_dir / "orthanc.log", client, self.s.orthanc_binary)
        os.environ["TCP_NODELAY"] = "1"  # dcmtk inside Orthanc: no Nagle delay per PDU
        worker_child, orthanc_child = Child("worker", self.s.worker_restart_backoff), Child("orthanc", self.s.worker_restart_backoff)
        try:
            try:
                self.orthanc.start(self.s.orthanc_start_timeout_s)
            except RuntimeError as e:
                raise InputError(str(e)) from e
            orthanc_child.started_at = time.monotonic()
            allowed = ", ".join(str(a) for a in self.s.allowed)
            log.info("node %s: DICOM port %d (callers allowed to store: %s), REST %s (loopback, authenticated), results to %s, stable age %d s",
                     self.s.aet, self.s.port, allowed, self.s.http_url, self.s.dest, self.s.stable_age_s)
            self._start_worker()
            worker_child.started_at = time.monotonic()
            while not self.stop_event.wait(0.5):
                now = time.monotonic()
                if not self.orthanc.alive() and orthanc_child.restart_at is None:
                    log.error("Orthanc exited; restarting it in %.0f s", orthanc_child.died(now))
                    self.orthanc.proc = None
                if orthanc_child.restart_at is not None and now >= orthanc_child.restart_at:
                    orthanc_child.restart_at = None
                    try:
                        self.orthanc.start(self.s.orthanc_start_timeout_s)
                    except RuntimeError as e:
                        log.error("%s", e)
                    orthanc_child.started_at = time.monotonic()
                if self.worker is not None and self.worker.poll() is not None and worker_child.restart_at is None:
                    rc = self.worker.returncode
                    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"status {rc}"
                    log.error("worker exited with %s; restarting it in %.0f s", how, worker_child.died(now))
                if worker_child.restart_at is not None and now >= worker_child.restart_at:
                    worker_child.restart_at = None
                    self._start_worker()
                    worker_child.started_at = time.monotonic()
        finally:
            log.info("stopping")
            self._stop_worker()
            self.orthanc.stop(self.s.orthanc_stop_timeout_s)
            log.info("node stopped")
            lock.close()
        return 0


def serve(settings: NodeSettings) -> int:
    configure_node_logging(settings.logs_dir, "serve")
    return Supervisor(settings).run()
