"""Start, watch and stop one Orthanc process with a generated configuration."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

from nstage.errors import InputError
from nstage.route.orthanc_api import OrthancClient
from nstage.route.proc import die_with_parent

log = logging.getLogger("nstage.route")


def orthanc_binary(name: str = "Orthanc") -> str:
    """The Orthanc executable (Debian package `orthanc` installs /usr/sbin/Orthanc)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if not found:
        raise InputError(f"the Orthanc executable {name!r} was not found: install the Debian package `orthanc` "
                         "(scripts/install-system-deps.sh) or pass --orthanc PATH")
    return found


class OrthancProcess:
    """One Orthanc server: `start()` runs it with `config_path` and waits until its REST API answers."""

    def __init__(self, config_path: Path, log_path: Path, client: OrthancClient, binary: str = "Orthanc") -> None:
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.client = client
        self.binary = binary
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 60.0) -> None:
        exe = orthanc_binary(self.binary)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([exe, str(self.config_path)], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent, cwd=str(self.config_path.parent))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with status {self.proc.returncode} while starting; see {self.log_path}")
            if self.client.is_ready():
                log.info("Orthanc started (pid %d, REST %s)", self.proc.pid, self.client.url)
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.client.url} within {timeout_s:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Orthanc did not stop within %.0f s; killing it", timeout_s)
                self.proc.kill()
                self.proc.wait()
        self.proc = None
