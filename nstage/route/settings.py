"""Settings of one routing node: config/route.json defaults, command-line overrides, DIR/node.json.

`serve` resolves the settings once and writes them to WORK/node.json; the worker process reads
that file, so a restarted worker runs with exactly the settings of its node.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nstage.errors import InputError
from nstage.paths import REPO_ROOT, config_dir
from nstage.route.backoff import Backoff

NODE_FILE = "node.json"
PIPELINE_MODES = ("warm", "command")
_AET = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")  # 1-16 chars, no backslash or control chars


def check_aet(aet: str) -> str:
    """An AE title as DICOM allows it (1-16 characters, no backslash); surrounding spaces removed."""
    aet = aet.strip()
    if not _AET.match(aet):
        raise InputError(f"AE title {aet!r} is not valid: use 1 to 16 printable characters without backslash")
    return aet


def check_port(port: int, what: str) -> int:
    if not 1 <= int(port) <= 65535:
        raise InputError(f"{what} {port} is not a TCP port (1-65535)")
    return int(port)


def resolve_host(host: str) -> str:
    """The IPv4 address of a host name (Orthanc compares calling hosts as addresses)."""
    try:
        return socket.gethostbyname(host)
    except OSError as e:
        raise InputError(f"host {host!r} cannot be resolved ({e}); give an IP address") from e


@dataclass(frozen=True)
class DicomPeer:
    """A DICOM application entity reachable over the network: AET@HOST:PORT."""

    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> DicomPeer:
        m = re.match(r"^(?P<aet>[^@]+)@(?P<host>[^:]+):(?P<port>\d+)$", text.strip())
        if not m:
            raise InputError(f"--dest {text!r} is not AET@HOST:PORT (for example PACS@10.0.0.5:104)")
        return cls(check_aet(m["aet"]), m["host"], check_port(int(m["port"]), "destination port"))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CallingPeer:
    """A calling AE title allowed to C-STORE into the node, from one host address."""

    aet: str
    host: str

    @classmethod
    def parse(cls, text: str, default_host: str = "127.0.0.1") -> CallingPeer:
        aet, _, host = text.strip().partition("@")
        return cls(check_aet(aet), resolve_host(host or default_host))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}"


@dataclass(frozen=True)
class NodeSettings:
    """Everything the supervisor and the worker of one node need (see config/route.json)."""

    aet: str
    port: int
    dest: DicomPeer
    work: Path
    allowed: tuple[CallingPeer, ...]
    http_port: int
    models: Path
    rules: str
    pipeline_command: tuple[str, ...]
    stable_age_s: int
    poll_interval_s: float
    pipeline_timeout_s: float
    max_attempts: int
    pipeline_backoff: Backoff
    send_backoff: Backoff
    send_give_up_after_s: float
    connect_timeout_s: float
    dimse_timeout_s: float
    pet_ct_modalities: tuple[str, ...]
    delete_study_after_done: bool
    keep_input_after_done: bool
    orthanc_binary: str
    http_user: str
    orthanc_start_timeout_s: float
    orthanc_stop_timeout_s: float
    unknown_sop_class_accepted: bool
    maximum_storage_mb: int
    worker_restart_backoff: Backoff
    worker_stop_timeout_s: float
    workers: int = 1  # pipeline runs at once (intake and sending go on beside them)
    pipeline_mode: str = "warm"  # warm: long-lived worker processes (nstage/route/warm_pool.py); command: a `pipeline_command` process per study
    warm_command: tuple[str, ...] = ("{python}", "-m", "nstage.route.study_server", "--models", "{models}", "--rules", "{rules}",
                                     "--torch-threads", "1")

    # --- paths inside WORK -------------------------------------------------------------------
    @property
    def queue_path(self) -> Path:
        return self.work / "queue.sqlite"

    @property
    def jobs_dir(self) -> Path:
        return self.work / "jobs"

    @property
    def logs_dir(self) -> Path:
        return self.work / "logs"

    @property
    def orthanc_dir(self) -> Path:
        return self.work / "orthanc"

    @property
    def credentials_path(self) -> Path:
        return self.work / "credentials.json"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["work"] = str(self.work)
        d["models"] = str(self.models)
        d["dest"] = asdict(self.dest)
        d["allowed"] = [asdict(a) for a in self.allowed]
        for k in ("pipeline_backoff", "send_backoff", "worker_restart_backoff"):
            d[k] = getattr(self, k).as_dict()
        d["pet_ct_modalities"] = list(self.pet_ct_modalities)
        d["pipeline_command"] = list(self.pipeline_command)
        d["warm_command"] = list(self.warm_command)
        return d

    def save(self) -> Path:
        """Write WORK/node.json (atomically)."""
        path = self.work / NODE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeSettings:
        d = dict(d)
        d["work"] = Path(d["work"])
        d["models"] = Path(d["models"])
        d["dest"] = DicomPeer(**d["dest"])
        d["allowed"] = tuple(CallingPeer(**a) for a in d["allowed"])
        for k in ("pipeline_backoff", "send_backoff", "worker_restart_backoff"):
            d[k] = Backoff.from_dict(d[k])
        d["pet_ct_modalities"] = tuple(d["pet_ct_modalities"])
        d["pipeline_command"] = tuple(d["pipeline_command"])
        if "warm_command" in d:  # absent from the node.json of a node set up before warm workers: the default
            d["warm_command"] = tuple(d["warm_command"])
        return cls(**d)

    @classmethod
    def load(cls, work: Path) -> NodeSettings:
        path = Path(work) / NODE_FILE
        if not path.is_file():
            raise InputError(f"{path} does not exist: {work} is not the work folder of a node started with `nstage route serve`")
        return cls.from_json(json.loads(path.read_text()))


def route_defaults(path: Path | None = None) -> dict[str, Any]:
    """config/route.json (or the file given)."""
    path = Path(path) if path else config_dir() / "route.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"routing defaults {path} cannot be read ({e})") from e


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_settings(aet: str, port: int, dest: str, work: Path, allow: list[str] | None = None, http_port: int = 0,
                   models: Path | None = None, rules: str | None = None, stable_age_s: int | None = None,
                   defaults_file: Path | None = None, orthanc_binary: str | None = None, workers: int | None = None) -> NodeSettings:
    """Resolve a node's settings from the command line and config/route.json.

    Without `allow`, the destination's AE title at the destination's host is the one caller
    allowed to store (the hospital PACS both sends studies and receives results).
    """
    cfg = route_defaults(defaults_file)
    dest_peer = DicomPeer.parse(dest)
    allowed = tuple(CallingPeer.parse(a) for a in allow) if allow else (CallingPeer(dest_peer.aet, resolve_host(dest_peer.host)),)
    pipe, send, orth, work_cfg = cfg["pipeline"], cfg["send"], cfg["orthanc"], cfg["worker"]
    stable = int(stable_age_s if stable_age_s is not None else cfg["stable_age_s"])
    if stable < 1:
        raise InputError(f"--stable-age {stable} must be at least 1 second")
    runs = int(workers if workers is not None else pipe.get("workers", 1))
    if runs < 1:
        raise InputError(f"--workers {runs} must be at least 1")
    mode = pipe.get("mode", "warm")
    if mode not in PIPELINE_MODES:
        raise InputError(f"pipeline.mode {mode!r} of the routing defaults: choose one of {', '.join(PIPELINE_MODES)}")
    models = Path(models) if models else REPO_ROOT / "models"
    if not models.is_dir():
        raise InputError(f"models folder {models} does not exist (pass --models with the app's models folder)")
    return NodeSettings(
        aet=check_aet(aet), port=check_port(port, "--port"), dest=dest_peer, work=Path(work).resolve(), allowed=allowed,
        http_port=check_port(http_port, "--http-port") if http_port else free_port(), models=models.resolve(),
        rules=rules or pipe["rules"], pipeline_command=tuple(pipe["command"]), stable_age_s=stable, poll_interval_s=float(cfg["poll_interval_s"]),
        pipeline_timeout_s=float(pipe["timeout_s"]), max_attempts=int(pipe["max_attempts"]),
        pipeline_backoff=Backoff.from_dict(pipe["retry_backoff"]), send_backoff=Backoff.from_dict(send["retry_backoff"]),
        send_give_up_after_s=float(send["give_up_after_s"]), connect_timeout_s=float(send["connect_timeout_s"]),
        dimse_timeout_s=float(send["dimse_timeout_s"]), pet_ct_modalities=tuple(cfg["pet_ct_modalities"]),
        delete_study_after_done=bool(cfg["delete_study_after_done"]), keep_input_after_done=bool(cfg["keep_input_after_done"]),
        orthanc_binary=orthanc_binary or orth["binary"], http_user=orth["http_user"],
        orthanc_start_timeout_s=float(orth["start_timeout_s"]), orthanc_stop_timeout_s=float(orth["stop_timeout_s"]),
        unknown_sop_class_accepted=bool(orth["unknown_sop_class_accepted"]), maximum_storage_mb=int(orth["maximum_storage_mb"]),
        worker_restart_backoff=Backoff.from_dict(work_cfg["restart_delay_s"]), worker_stop_timeout_s=float(work_cfg["stop_timeout_s"]),
        workers=runs, pipeline_mode=mode, warm_command=tuple(pipe.get("warm_command", NodeSettings.warm_command)),
    )
