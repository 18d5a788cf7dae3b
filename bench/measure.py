"""Run a command as a child process and measure its wall time and peak memory (its own rusage)."""

from __future__ import annotations

import os
import subprocess
import time


def run_measured(cmd: list[str], cwd: str | None = None) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (GB) of one command, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_gb": round(usage.ru_maxrss / 1e6, 3)}
