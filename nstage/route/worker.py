"""The node's worker: stable studies -> queue -> pipeline -> C-STORE of the results.

One process owns the queue and Orthanc's change cursor; its loop reads Orthanc's changes
(StableStudy events; the last seq handled is kept in the queue database), collects the pipeline
runs that ended, starts queued jobs while fewer than `workers` runs are going (each run goes to a
warm pipeline worker process of nstage/route/warm_pool.py, or with `pipeline.mode` command to an
`nstage run` child process, and is waited for by a thread of its own), and sends the results of one job
that is due. Intake and sending therefore go on while studies are processed. Every step is
persisted before the next starts, so the worker can be killed (SIGKILL) at any moment and resumes
on restart: runs without persisted outputs are re-run; persisted outputs are sent (again, with the
same SOP Instance UIDs) without re-running; and, stable_age_s after the start, studies Orthanc holds
without a job are taken in (Orthanc forgets its stable-age timers when killed). A job runs in one child at a time: the queue moves it
queued -> running in one transaction, and the loop never starts a job that is already running.
Started by `nstage route serve`, or by hand: `python -m nstage.route.worker WORK`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from nstage.route.config import load_or_create_credentials
from nstage.route.fingerprint import file_sha256
from nstage.route.intake import clean_incoming, delete_instances, handle_stable_study, studies_without_a_job
from nstage.route.layout import (
    INSTANCES_FILE,
    input_dir,
    move_into_place,
    output_dir,
    remove,
    run_dir,
)
from nstage.route.logs import configure_node_logging
from nstage.route.orthanc_api import OrthancClient, OrthancUnavailable
from nstage.route.pipeline_runner import (
    CRASHED,
    INPUT_ERROR,
    OK,
    STOPPED,
    PipelineRun,
    RunOutcome,
    pipeline_command,
)
from nstage.route.queue import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    SENDING,
    Job,
    JobQueue,
    OutputFile,
)
from nstage.route.sender import SendError, store_file
from nstage.route.settings import NodeSettings
from nstage.route.warm_pool import WarmPool, WarmRun, server_command

log = logging.getLogger("nstage.route")

INTAKE_TRIES = 3  # a change whose intake keeps failing (not because Orthanc is down) is recorded failed
STEP_TRIES = 3  # a job whose step keeps raising (a bug, a full disk) ends failed

Sender = Callable[..., None]
PipelineCommand = Callable[[Path, Path, Path, str], list[str]]


@dataclass
class ActiveRun:
    """A pipeline run in progress: its job, child, run folder and final output folder; `outcome` once it ended."""

    job: Job
    run: PipelineRun | WarmRun
    tmp: Path
    out: Path
    started: float  # time.monotonic()
    thread: threading.Thread | None = None
    outcome: RunOutcome | None = None


class Worker:
    """The loop; `request_stop()` (signal-safe) ends it after the current step."""

    def __init__(self, settings: NodeSettings, client: OrthancClient, queue: JobQueue, send: Sender = store_file,
                 clock: Callable[[], float] = time.time, pipeline: PipelineCommand | None = None, pool: WarmPool | None = None) -> None:
        """`pipeline` (a command per study) or `pool` (warm worker processes) replace the settings' way of running studies."""
        self.s = settings
        self.client = client
        self.queue = queue
        self.send = send
        if pool is None and pipeline is None and settings.pipeline_mode == "warm":
            pool = WarmPool(server_command(settings.warm_command, settings.models, settings.rules), settings.workers,
                            settings.worker_stop_timeout_s)
        self.pool = pool  # None: a `pipeline` command process per study
        self.pipeline = pipeline or (lambda i, o, m, r: pipeline_command(i, o, m, r, settings.pipeline_command))
        self.clock = clock
        self.stop_event = threading.Event()
        self.active: dict[int, ActiveRun] = {}  # job id -> its run in progress
        self._wake = threading.Event()  # set when a run ends (or on stop): the loop looks again at once
        self._intake_failures: dict[int, int] = {}
        self._step_failures: dict[int, int] = {}
        self._scan_at: float | None = None  # time.monotonic() of the start-up scan for missed studies; None once done
        for d in (settings.jobs_dir, settings.work / "inputs"):
            d.mkdir(parents=True, exist_ok=True)

    def request_stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
        for active in list(self.active.values()):
            active.run.terminate()

    # --- start-up --------------------------------------------------------------------------
    def recover(self) -> None:
        """Bring jobs left `running` by a dead worker back into the state machine."""
        clean_incoming(self.s.work)
        for job in self.queue.jobs([RUNNING]):
            self._recover_running(job)
        for job in self.queue.jobs([DONE]):
            if not self.s.keep_input_after_done:
                remove(input_dir(self.s.work, job.study_key, job.fingerprint))
        try:
            last = self.client.last_change()
            if self.queue.cursor() > last:
                log.warning("Orthanc's change log restarted (last seq %d < handled %d): reading it from the start", last, self.queue.cursor())
                self.queue.set_cursor(0)
        except OrthancUnavailable:
            pass

    def _recover_running(self, job: Job) -> None:
        """A job left `running` with no run in progress: send its persisted outputs, or queue it again."""
        remove(run_dir(self.s.jobs_dir, job.id))
        if output_dir(self.s.jobs_dir, job.id).is_dir():
            log.info("job %d: outputs were persisted before the worker stopped; sending them", job.id)
            self._record_outputs(job)
        else:
            log.info("job %d: the worker stopped during the pipeline run; it runs again", job.id)
            self.queue.interrupted(job.id, count_attempt=True, now=self.clock())

    # --- intake ------------------------------------------------------------------------------
    def scan_for_missed_studies(self) -> int:
        """Take in the stable studies Orthanc holds without a job (they arrived just before the node died)."""
        missed = studies_without_a_job(self.client, self.queue, self.s)
        for study_id in missed:
            if self.stop_event.is_set():
                break
            log.info("study %s: in Orthanc but unknown to the queue (it arrived before the node stopped); taking it in", study_id)
            try:
                handle_stable_study(self.client, self.queue, self.s, study_id)
            except OrthancUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - its next StableStudy change or the next start tries again
                log.warning("study %s: intake failed (%s: %s)", study_id, type(e).__name__, e)
        log.info("start-up scan: %d stable stud%s in Orthanc without a job", len(missed), "y" if len(missed) == 1 else "ies")
        return len(missed)

    def _scan_if_due(self) -> bool:
        if self._scan_at is None or time.monotonic() < self._scan_at:
            return False
        self.scan_for_missed_studies()
        self._scan_at = None
        return True

    def poll_changes(self) -> int:
        """Handle the changes Orthanc logged since the cursor; returns how many were read."""
        changes, _last, _done = self.client.changes(self.queue.cursor())
        for ch in changes:
            if self.stop_event.is_set():
                break
            if ch.change_type == "StableStudy":
                try:
                    handle_stable_study(self.client, self.queue, self.s, ch.resource_id)
                except OrthancUnavailable:
                    raise
                except Exception as e:  # noqa: BLE001 - recorded, retried, then given up
                    n = self._intake_failures[ch.seq] = self._intake_failures.get(ch.seq, 0) + 1
                    log.warning("study %s: intake failed (%s: %s), try %d of %d", ch.resource_id, type(e).__name__, e, n, INTAKE_TRIES)
                    if n < INTAKE_TRIES:
                        return 0
                    self.queue.add(ch.resource_id, "", f"intake-error:{ch.seq}", 0, "", state=FAILED, error=f"intake failed: {type(e).__name__}: {e}")
            self.queue.set_cursor(ch.seq)
        return len(changes)

    # --- jobs --------------------------------------------------------------------------------
    def step(self) -> bool:
        """Advance the oldest due job by one step, a pipeline run included (waited for here); False when none is due."""
        job = self.queue.next_due(self.clock())
        if job is None:
            return False
        if job.state == QUEUED:
            self._guarded(job, lambda: self._run(job))
        elif job.state == RUNNING:  # only after a crash within this process's life
            self._guarded(job, self.recover)
        elif job.state == SENDING:
            self._guarded(job, lambda: self._send(job))
        return True

    def tick(self) -> bool:
        """One pass of the loop without waiting for runs: collect ended runs, start queued jobs up to `workers`,
        send one due job. True when something was done."""
        did = self._harvest()
        stale = self.queue.next_due(self.clock(), (RUNNING,), self.active)
        if stale is not None:  # left running by a step that raised within this process's life
            self._guarded(stale, lambda: self._recover_running(stale))
            did = True
        while len(self.active) < self.s.workers and not self.stop_event.is_set():
            job = self.queue.next_due(self.clock(), (QUEUED,), self.active)
            if job is None:
                break
            active = self._guarded(job, lambda: self._begin_run(job))
            if active is not None:
                self._launch(active)
            did = True
        job = self.queue.next_due(self.clock(), (SENDING,))
        if job is not None and not self.stop_event.is_set():
            self._guarded(job, lambda: self._send(job))
            did = True
        return did

    def _guarded(self, job: Job, action: Callable[[], Any]) -> Any:
        """Run one step of a job; an exception is logged and counted, and the job fails after STEP_TRIES of them."""
        try:
            value = action()
            self._step_failures.pop(job.id, None)
            return value
        except OrthancUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            n = self._step_failures[job.id] = self._step_failures.get(job.id, 0) + 1
            log.exception("job %d: step failed (%s), try %d of %d", job.id, type(e).__name__, n, STEP_TRIES)
            if n >= STEP_TRIES:
                current = self.queue.get(job.id)
                if current.state in (QUEUED, RUNNING, SENDING):
                    self.queue.give_up(job.id, f"internal error: {type(e).__name__}: {e}", now=self.clock())
            else:
                time.sleep(1)
            return None

    def _run(self, job: Job) -> None:
        """The whole pipeline run of a queued job, waited for in this thread."""
        active = self._begin_run(job)
        if active is None:
            return
        self.active[job.id] = active
        try:
            outcome = active.run.run(self.s.pipeline_timeout_s)
        finally:
            self.active.pop(job.id, None)
        self._end_run(active, outcome)

    def _launch(self, active: ActiveRun) -> None:
        """Start a run in a thread of its own; the loop collects its outcome (`_harvest`)."""
        def wait() -> None:
            try:
                active.outcome = active.run.run(self.s.pipeline_timeout_s)
            except Exception as e:  # noqa: BLE001 - e.g. the child could not be started
                active.outcome = RunOutcome(CRASHED, None, f"the pipeline could not be run: {type(e).__name__}: {e}")
            finally:
                self._wake.set()

        self.active[active.job.id] = active
        active.thread = threading.Thread(target=wait, name=f"job-{active.job.id}", daemon=True)
        active.thread.start()

    def _harvest(self) -> bool:
        """Record the outcome of every run that ended; True when there was one."""
        ended = [a for a in self.active.values() if a.thread is not None and not a.thread.is_alive()]
        for a in ended:
            del self.active[a.job.id]
            outcome = a.outcome or RunOutcome(CRASHED, None, "the pipeline run ended without an outcome")
            self._guarded(a.job, lambda: self._end_run(a, outcome))
        return bool(ended)

    def _begin_run(self, job: Job) -> ActiveRun | None:
        """Queued -> running with a prepared run folder; None when the job needs no run (or can have none)."""
        if job.attempts >= self.s.max_attempts:
            self.queue.give_up(job.id, f"the pipeline did not complete in {job.attempts} attempt(s) (the worker died each time)", now=self.clock())
            log.error("job %d failed: the worker died during each of %d attempts", job.id, job.attempts)
            return None
        inp = input_dir(self.s.work, job.study_key, job.fingerprint)
        out = output_dir(self.s.jobs_dir, job.id)
        if out.is_dir():  # finished and persisted, but the worker died before recording it
            self._record_outputs(job)
            return None
        if not inp.is_dir():
            self.queue.give_up(job.id, f"input folder {inp} is missing; send the study again", now=self.clock())
            log.error("job %d failed: its input folder is missing", job.id)
            return None
        tmp = run_dir(self.s.jobs_dir, job.id)
        remove(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        job = self.queue.start_run(job.id, now=self.clock())
        log.info("job %d: pipeline attempt %d of %d (%d of %d runs at once)", job.id, job.attempts, self.s.max_attempts,
                 len(self.active) + 1, self.s.workers)
        prefix = f"job {job.id} "
        run = self.pool.run_for(inp, tmp, prefix) if self.pool else PipelineRun(self.pipeline(inp, tmp, self.s.models, self.s.rules), prefix)
        if self.stop_event.is_set():
            run.terminate()
        return ActiveRun(job, run, tmp, out, time.monotonic())

    def _end_run(self, active: ActiveRun, outcome: RunOutcome) -> None:
        """Record how a run ended: outputs persisted and `sending`, queued again, or failed."""
        job, tmp, out = active.job, active.tmp, active.out
        if outcome.status == OK and not (tmp / "result.json").is_file():
            outcome = RunOutcome(CRASHED, 0, "the pipeline exited 0 without writing result.json")
        if outcome.status == OK:
            move_into_place(tmp, out)
            log.info("job %d: pipeline finished in %.1f s; outputs persisted", job.id, time.monotonic() - active.started)
            self._record_outputs(job)
            return
        remove(tmp)
        if outcome.status == STOPPED:
            self.queue.interrupted(job.id, count_attempt=False, now=self.clock())
            log.info("job %d: pipeline stopped with the node; it runs again at the next start", job.id)
            return
        job = self.queue.run_failed(job.id, outcome.error, permanent=outcome.status == INPUT_ERROR, backoff=self.s.pipeline_backoff,
                                    max_attempts=self.s.max_attempts, now=self.clock())
        if job.state == FAILED:
            log.error("job %d failed: %s", job.id, job.error)
        else:
            log.warning("job %d: %s; retry in %.0f s", job.id, outcome.error, job.not_before - self.clock())

    def _record_outputs(self, job: Job) -> None:
        """Read the persisted outputs' UIDs and enter `sending` (idempotent)."""
        out = output_dir(self.s.jobs_dir, job.id)
        files = []
        for p in sorted(out.glob("*.dcm")):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            files.append(OutputFile(p.name, str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.get("Modality", "")), file_sha256(p)))
        if not files:
            log.warning("job %d: the pipeline wrote no DICOM result (*.dcm); nothing to send", job.id)
        self.queue.run_succeeded(job.id, files, now=self.clock())

    def _send(self, job: Job) -> None:
        out = output_dir(self.s.jobs_dir, job.id)
        for o in self.queue.unsent(job.id):
            if self.stop_event.is_set():
                return
            path = out / o.name
            if not path.is_file() or file_sha256(path) != o.sha256:
                self.queue.give_up(job.id, f"persisted output {o.name} is missing or altered", now=self.clock())
                log.error("job %d failed: persisted output %s is missing or altered", job.id, o.name)
                return
            try:
                self.send(path, self.s.dest, self.s.aet, self.s.connect_timeout_s, self.s.dimse_timeout_s)
            except SendError as e:
                j = self.queue.send_failed(job.id, str(e), self.s.send_backoff, self.s.send_give_up_after_s, now=self.clock())
                if j.state == FAILED:
                    log.error("job %d failed: %s", job.id, j.error)
                else:
                    log.warning("job %d: %s; send attempt %d in %.0f s", job.id, e, j.send_failures + 1, j.not_before - self.clock())
                return
            self.queue.mark_sent(job.id, o.name, now=self.clock())
            log.info("job %d: sent %s (%s) to %s", job.id, o.name, o.modality, self.s.dest)
        job = self.queue.finish(job.id, now=self.clock())
        log.info("job %d done: %d result(s) at %s, %.1f s after it was queued", job.id, len(self.queue.outputs(job.id)), self.s.dest,
                 (job.finished_at or 0) - job.created_at)
        self._clean_after_done(job)

    def _clean_after_done(self, job: Job) -> None:
        inp = input_dir(self.s.work, job.study_key, job.fingerprint)
        if self.s.delete_study_after_done and (inp / INSTANCES_FILE).is_file():
            ids = [i["orthanc_id"] for i in json.loads((inp / INSTANCES_FILE).read_text())]
            try:
                delete_instances(self.client, ids)
            except OrthancUnavailable as e:
                log.warning("job %d: could not delete the study from Orthanc (%s)", job.id, e)
        if not self.s.keep_input_after_done:
            remove(inp)

    # --- the loop ----------------------------------------------------------------------------
    def run_forever(self) -> None:
        self.recover()
        if self.pool is not None:
            self.pool.start()  # the warm workers load model and atlas while the node waits for studies
        # Once a study had time to become stable after the start (as Orthanc reckons it), look for the
        # ones whose StableStudy change was lost with a killed Orthanc.
        self._scan_at = time.monotonic() + self.s.stable_age_s
        unavailable_logged = False
        while not self.stop_event.is_set():
            n, did = 0, False
            try:
                n = self.poll_changes()
                did = self._scan_if_due()
                did = self.tick() or did
                unavailable_logged = False
            except OrthancUnavailable as e:
                if not unavailable_logged:
                    log.warning("%s; waiting for it", e)
                    unavailable_logged = True
                did = self._harvest()  # runs that end while Orthanc is away are still recorded
            if not did and not n:
                self._wake.wait(self.s.poll_interval_s)
                self._wake.clear()
        self.stop_runs()
        log.info("worker stopped")

    def stop_runs(self) -> None:
        """Stop the runs in progress (their jobs go back to queued without using an attempt) and record them."""
        for a in list(self.active.values()):
            a.run.terminate()
        for a in list(self.active.values()):
            if a.thread is not None:
                a.thread.join(self.s.worker_stop_timeout_s)
        self._harvest()
        if self.pool is not None:
            self.pool.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nstage.route.worker", description="the worker of a node started by `nstage route serve`")
    p.add_argument("work", type=Path, help="the node's work folder")
    args = p.parse_args(argv)
    settings = NodeSettings.load(args.work)
    configure_node_logging(settings.logs_dir, "worker")
    user, password = load_or_create_credentials(settings.credentials_path, settings.http_user)
    worker = Worker(settings, OrthancClient(settings.http_url, user, password), JobQueue(settings.queue_path))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    log.info("worker started (node %s, destination %s)", settings.aet, settings.dest)
    worker.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
