"""C-STORE of one result file to the destination with dcmtk's `storescu`.

Success means: storescu exited 0 and reported a Success (or Warning) store response. Anything
else (destination down, association rejected, no presentation context, failure status) raises
SendError with storescu's own words (which name files and UIDs, never patients).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from nstage.errors import InputError
from nstage.route.settings import DicomPeer

_RESPONSE = re.compile(r"Received Store Response \((?P<status>[^),]+)")


class SendError(Exception):
    """The destination did not take the file."""


def storescu_binary() -> str:
    found = shutil.which("storescu")
    if not found:
        raise InputError("dcmtk's `storescu` was not found: install the Debian package `dcmtk` (scripts/install-system-deps.sh)")
    return found


def store_command(path: Path, dest: DicomPeer, calling_aet: str, connect_timeout_s: float, dimse_timeout_s: float) -> list[str]:
    t = str(max(1, int(round(connect_timeout_s))))
    # -R: propose exactly the file's SOP class and transfer syntax (storescu's default list lacks
    # e.g. Comprehensive 3D SR, the SR the pipeline writes)
    return [storescu_binary(), "-v", "-R", "-aet", calling_aet, "-aec", dest.aet, "-to", t, "-ta", t, "-td", str(max(1, int(round(dimse_timeout_s)))),
            dest.host, str(dest.port), str(path)]


def store_file(path: Path, dest: DicomPeer, calling_aet: str, connect_timeout_s: float = 10, dimse_timeout_s: float = 60) -> None:
    """Send one DICOM file; raise SendError unless the destination answered Success or Warning."""
    cmd = store_command(path, dest, calling_aet, connect_timeout_s, dimse_timeout_s)
    env = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk: no Nagle delay per PDU
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, timeout=connect_timeout_s * 3 + dimse_timeout_s + 10)
    except subprocess.TimeoutExpired as e:
        raise SendError(f"storescu to {dest} timed out") from e
    out = (res.stdout + res.stderr).strip()
    statuses = [m["status"].strip() for m in _RESPONSE.finditer(out)]
    if res.returncode == 0 and statuses and all(s.startswith(("Success", "Warning")) for s in statuses):
        return
    problems = [line for line in out.splitlines() if line.startswith(("E:", "F:", "W:"))] or out.splitlines()[-2:]
    raise SendError(f"C-STORE of {Path(path).name} to {dest} failed (storescu exit {res.returncode}): " + " / ".join(p.strip() for p in problems)[:500])
