"""The generated configuration of a node's own Orthanc, and its HTTP credentials.

Security choices (docs/routing.md): the REST API answers loopback clients only
(`RemoteAccessAllowed: false`) and only with the generated credentials; C-STORE is accepted
only from the configured calling AE titles at their configured hosts
(`DicomAlwaysAllowStore: false`, `DicomCheckModalityHost: true`); the called AE title must be the
node's; no plugins, no Lua, no WebDAV; Orthanc's own logs are de-identified.
Orthanc 1.10 cannot bind its DICOM port to one interface: the host check (and the hospital's
firewall) restrict who can connect.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nstage.route.settings import CallingPeer

PRIVATE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (created 0600, then moved into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, PRIVATE)
    os.replace(tmp, path)


def load_or_create_credentials(path: Path, user: str) -> tuple[str, str]:
    """The node's HTTP user and password: generated once, kept 0600 in the work folder."""
    if path.is_file():
        d = json.loads(path.read_text())
        os.chmod(path, PRIVATE)
        return str(d["user"]), str(d["password"])
    password = secrets.token_urlsafe(24)
    write_private(path, json.dumps({"user": user, "password": password}))
    return user, password


def orthanc_config(*, name: str, aet: str, dicom_port: int, http_port: int, storage_dir: Path, index_dir: Path,
                   users: dict[str, str], allowed: Sequence[CallingPeer], stable_age_s: int,
                   unknown_sop_class_accepted: bool = False, maximum_storage_mb: int = 0) -> dict[str, Any]:
    """An Orthanc 1.10 configuration for one node (or a test PACS) on the given ports."""
    if not users:
        raise ValueError("an Orthanc with authentication needs at least one user")
    modalities = {
        f"caller{i}_{peer.aet}": {
            "AET": peer.aet, "Host": peer.host, "Port": 104,  # port unused: callers only store into us
            "AllowEcho": True, "AllowStore": True, "AllowFind": False, "AllowFindWorklist": False, "AllowGet": False,
            "AllowMove": False, "AllowStorageCommitment": False,
        }
        for i, peer in enumerate(allowed)
    }
    return {
        "Name": name,
        "StorageDirectory": str(storage_dir),
        "IndexDirectory": str(index_dir),
        "StorageCompression": False,
        "MaximumStorageSize": int(maximum_storage_mb),
        "Plugins": [],
        "LuaScripts": [],
        "ExecuteLuaEnabled": False,
        "HttpServerEnabled": True,
        "HttpPort": int(http_port),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": dict(users),
        "SslEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "HttpDescribeErrors": True,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": int(dicom_port),
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": modalities,
        "DicomModalitiesInDatabase": False,
        "OrthancPeers": {},
        "UnknownSopClassAccepted": bool(unknown_sop_class_accepted),
        "StableAge": int(stable_age_s),
        "StrictAetComparison": True,
        "OverwriteInstances": False,
        "SaveJobs": False,
        "DeidentifyLogs": True,
        "LogExportedResources": False,
        "MetricsEnabled": False,
        "StoreMD5ForAttachments": True,
    }


def write_orthanc_config(path: Path, config: dict[str, Any]) -> Path:
    """Write the configuration 0600 (it holds the HTTP password)."""
    write_private(path, json.dumps(config, indent=1))
    return path
