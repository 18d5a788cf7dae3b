"""Child-process helpers: children die with their parent (Linux), so no orphan outlives a killed node."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: ask the kernel to SIGKILL this child when its parent dies (no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except OSError:
        pass
