"""Run `nstage run` on one study in a child process; its log lines go to the node's log.

A crash of the pipeline (segfault, out of memory) ends the child, never the worker. The child
dies with the worker (PR_SET_PDEATHSIG), so a killed worker leaves no pipeline running.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from nstage.route.proc import die_with_parent

log = logging.getLogger("nstage.route")

OK, INPUT_ERROR, CRASHED, TIMEOUT, STOPPED = "ok", "input_error", "crashed", "timeout", "stopped"


@dataclass(frozen=True)
class RunOutcome:
    status: str  # ok | input_error | crashed | timeout | stopped
    returncode: int | None
    error: str = ""


DEFAULT_COMMAND = ("{python}", "-m", "nstage.cli", "run", "-i", "{input}", "-o", "{output}", "-m", "{models}", "--rules", "{rules}")


def pipeline_command(input_dir: Path, out_dir: Path, models: Path, rules: str, template: tuple[str, ...] = DEFAULT_COMMAND) -> list[str]:
    """The argv of one run from the command template of config/route.json (`nstage run` by default)."""
    values = {"python": sys.executable, "input": str(input_dir), "output": str(out_dir), "models": str(models), "rules": rules}
    return [part.format(**values) for part in template]


class PipelineRun:
    """One pipeline child process; `terminate()` may be called from a signal handler."""

    def __init__(self, command: list[str], log_prefix: str) -> None:
        self.command = command
        self.log_prefix = log_prefix
        self.proc: subprocess.Popen | None = None
        self._stopped = threading.Event()
        self._last_error = ""

    def terminate(self) -> None:
        self._stopped.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip()
            if not line:
                continue
            if line.startswith("error:"):
                self._last_error = line[len("error:"):].strip()
            log.info("%s| %s", self.log_prefix, line)

    def run(self, timeout_s: float) -> RunOutcome:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", env=env, preexec_fn=die_with_parent)
        pump = threading.Thread(target=self._pump, daemon=True)
        pump.start()
        if self._stopped.is_set():
            self.terminate()
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pump.join(5)
            return RunOutcome(TIMEOUT, None, f"the pipeline did not finish within {timeout_s:.0f} s")
        pump.join(5)
        if self._stopped.is_set():
            return RunOutcome(STOPPED, rc, "stopped with the node")
        if rc == 0:
            return RunOutcome(OK, 0)
        if rc == 2 and self._last_error:
            return RunOutcome(INPUT_ERROR, rc, self._last_error)
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        return RunOutcome(CRASHED, rc, f"the pipeline ended with {how}" + (f": {self._last_error}" if self._last_error else ""))
