"""The node's warm pipeline workers: long-lived `nstage.route.study_server` processes, one per `--workers` slot.

Each process loads the model, the atlas and the libraries once and then analyses study after study
(a fresh `nstage run` per study spends seconds on that every time). A study's run keeps the
guarantees of a child process per study:

- a worker process that dies during a study (segfault, out of memory, SIGKILL) ends that run as
  `crashed`; the worker loop retries the job, and the slot gets a fresh process for its next study;
- a run past the timeout kills its process (`timeout`); a stop (SIGTERM of the node) terminates the
  processes of the runs in progress (`stopped`: the jobs run again at the next start);
- every process dies with the node's worker (PR_SET_PDEATHSIG). The kernel sends that signal when
  the *thread* that started the child ends, so processes are started only by the worker's main
  thread (`WarmPool.start`, `WarmPool.run_for`), never by a run's waiting thread.

Log lines of a process go to the node's log, prefixed with the job it is working on.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nstage.route.pipeline_runner import CRASHED, INPUT_ERROR, OK, STOPPED, TIMEOUT, RunOutcome
from nstage.route.proc import die_with_parent

log = logging.getLogger("nstage.route")

_EOF = object()  # put on a server's answer queue when its standard output closes (the process ended)


def server_command(template: tuple[str, ...] | list[str], models: Path, rules: str) -> list[str]:
    """The argv of a warm worker process from config/route.json's `warm_command` ({python} {models} {rules} filled in)."""
    values = {"python": sys.executable, "models": str(models), "rules": rules}
    return [part.format(**values) for part in template]


class StudyServer:
    """One warm worker process and the threads that read its answers and its log lines."""

    def __init__(self, command: list[str], slot: int) -> None:
        self.slot = slot
        self.prefix = f"pipeline worker {slot} "  # log prefix while idle; the job's while it works on one
        self.answers: queue.Queue[Any] = queue.Queue()
        self.ready = threading.Event()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent)
        threading.Thread(target=self._read_answers, name=f"server-{slot}-answers", daemon=True).start()
        threading.Thread(target=self._pump_log, name=f"server-{slot}-log", daemon=True).start()
        log.info("pipeline worker %d started (pid %d)", slot, self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("%s| unexpected output: %s", self.prefix, line.rstrip()[:200])
                continue
            if msg.get("ready"):
                self.ready.set()
            else:
                self.answers.put(msg)
        self.answers.put(_EOF)

    def _pump_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.rstrip()
            if line:
                log.info("%s| %s", self.prefix, line)

    def send(self, request: dict[str, str]) -> None:
        """Write one request (BrokenPipeError when the process is gone)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def ended_how(self) -> str:
        """How the process ended, for an error line ('signal SIGKILL', 'exit status 1')."""
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return "an unknown cause (it still runs)"
        return f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"

    def close(self, timeout_s: float) -> None:
        """End the process: end of input (it exits when idle), then SIGTERM, then SIGKILL."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                self.signal(sig)
            try:
                self.proc.wait(timeout_s)
                return
            except subprocess.TimeoutExpired:
                continue


class WarmRun:
    """One study on a warm worker process: the same interface as PipelineRun (`run`, `terminate`)."""

    def __init__(self, pool: WarmPool, server: StudyServer, request: dict[str, str], log_prefix: str) -> None:
        self.pool = pool
        self.server = server
        self.request = request
        self.log_prefix = log_prefix
        self._stopped = threading.Event()

    def terminate(self) -> None:
        """Stop the run: its process gets SIGTERM (safe from a signal handler)."""
        self._stopped.set()
        self.server.signal(signal.SIGTERM)

    def run(self, timeout_s: float) -> RunOutcome:
        try:
            return self._run(timeout_s)
        finally:
            self.server.prefix = f"pipeline worker {self.server.slot} "
            self.pool.release(self.server)

    def _run(self, timeout_s: float) -> RunOutcome:
        server = self.server
        server.prefix = self.log_prefix
        if self._stopped.is_set():
            server.signal(signal.SIGTERM)
        try:
            server.send(self.request)
        except OSError:
            pass  # the process is gone: its answer queue ends with _EOF
        try:
            answer = server.answers.get(timeout=timeout_s)
        except queue.Empty:
            server.signal(signal.SIGKILL)
            server.proc.wait()  # dead before the slot is released: its next run gets a fresh process
            return RunOutcome(TIMEOUT, None, f"the pipeline did not finish within {timeout_s:.0f} s")
        if answer is _EOF:
            how = server.ended_how()
            if self._stopped.is_set():
                return RunOutcome(STOPPED, server.proc.returncode, "stopped with the node")
            return RunOutcome(CRASHED, server.proc.returncode, f"the pipeline worker process ended with {how} during the study")
        status, error = answer.get("status"), str(answer.get("error", ""))
        if status == OK:
            return RunOutcome(OK, 0)
        if status == INPUT_ERROR:
            return RunOutcome(INPUT_ERROR, 2, error)
        return RunOutcome(CRASHED, 1, f"the pipeline crashed: {error}")


class WarmPool:
    """`size` warm worker processes; a run takes an idle one (a dead one is replaced first)."""

    def __init__(self, command: list[str], size: int, stop_timeout_s: float = 30.0) -> None:
        self.command = list(command)
        self.size = size
        self.stop_timeout_s = stop_timeout_s
        self.servers: list[StudyServer | None] = [None] * size
        self.busy: set[int] = set()
        self._lock = threading.Lock()
        self.started = 0  # processes started over the pool's life

    def _server(self, slot: int) -> StudyServer:
        server = self.servers[slot]
        if server is None or not server.alive():
            if server is not None:
                log.warning("pipeline worker %d (pid %d) ended with %s; starting a new one", slot, server.pid, server.ended_how())
            server = self.servers[slot] = StudyServer(self.command, slot)
            self.started += 1
        return server

    def start(self) -> None:
        """Start every slot's process now (they warm up while the node waits for studies). Main thread only."""
        with self._lock:
            for slot in range(self.size):
                if slot not in self.busy:
                    self._server(slot)

    def run_for(self, input_dir: Path, output_dir: Path, log_prefix: str) -> WarmRun:
        """A run of one study on an idle process (started or replaced here: main thread only)."""
        with self._lock:
            slot = next((s for s in range(self.size) if s not in self.busy), None)
            if slot is None:
                raise RuntimeError(f"all {self.size} pipeline workers are busy")
            server = self._server(slot)
            self.busy.add(slot)
        return WarmRun(self, server, {"input": str(input_dir), "output": str(output_dir)}, log_prefix)

    def release(self, server: StudyServer) -> None:
        with self._lock:
            self.busy.discard(server.slot)

    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s is not None and s.alive()]

    def close(self) -> None:
        """End every process (idle ones exit at the end of their input)."""
        with self._lock:
            servers, self.servers = [s for s in self.servers if s is not None], [None] * self.size
        deadline = time.monotonic() + self.stop_timeout_s
        for s in servers:
            s.close(max(1.0, deadline - time.monotonic()))
