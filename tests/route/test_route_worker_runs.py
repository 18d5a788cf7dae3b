"""The worker with several pipeline runs at once (`--workers`), without servers: runs go on in the
background while the loop sends finished results and starts the next queued job; never more runs
than workers, never one job twice; a stop puts every run in progress back in the queue."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from nstage.route.queue import DONE, QUEUED, RUNNING, JobQueue
from nstage.route.worker import Worker
from tests.route.route_harness import wait_for
from tests.route.test_route_worker import FAKE, Clock, FakeClient, Sender, enqueue


def gated_worker(settings, workers: int, sender: Sender) -> tuple[Worker, Path]:
    """A worker whose pipeline runs wait for a go file per job (tests/route/route_fake_pipeline.py `gated`)."""
    gates = settings.work / "gates"
    gates.mkdir()

    def pipeline(inp: Path, out: Path, models: Path, rules: str) -> list[str]:
        return [sys.executable, str(FAKE), "gated", str(gates), "-i", str(inp), "-o", str(out), "-m", str(models), "--rules", rules]

    s = dataclasses.replace(settings, workers=workers)
    return Worker(s, FakeClient(), JobQueue(s.queue_path), send=sender, clock=Clock(), pipeline=pipeline), gates


def release(gates: Path, job_id: int) -> None:
    (gates / f"go-{job_id:06d}").write_text("")


def states(w: Worker, ids: list[int]) -> list[str]:
    return [w.queue.get(i).state for i in ids]


def started(gates: Path, job_id: int) -> int:
    return len(list(gates.glob(f"{job_id:06d}.*")))


def test_two_runs_at_once_while_results_of_a_finished_one_are_sent(node) -> None:
    sender = Sender()
    ids = [enqueue(node, f"study-{k}") for k in range(3)]
    w, gates = gated_worker(node, 2, sender)
    t0 = time.monotonic()
    assert w.tick()
    assert time.monotonic() - t0 < 10  # the loop does not wait for the runs
    assert states(w, ids) == [RUNNING, RUNNING, QUEUED] and sorted(w.active) == ids[:2]
    wait_for(lambda: started(gates, ids[0]) and started(gates, ids[1]), 30, "both runs to start")
    release(gates, ids[0])
    wait_for(lambda: (w.tick(), w.queue.get(ids[0]).state == DONE)[1], 30, "the first job's results to be sent")
    assert w.queue.get(ids[1]).state == RUNNING  # still processing while the first one's results went out
    assert sorted(n for n, _ in sender.sent) == ["findings_sr.dcm", "report_pdf.dcm"]
    assert states(w, ids)[2] == RUNNING and len(w.active) == 2  # the free slot took the queued job
    release(gates, ids[1])
    release(gates, ids[2])
    wait_for(lambda: (w.tick(), states(w, ids) == [DONE] * 3)[1], 30, "every job to be done")
    assert [started(gates, i) for i in ids] == [1, 1, 1]  # each job ran once
    uids = [u for _, u in sender.sent]
    assert len(uids) == 6 and len(set(uids)) == 6
    assert {u for _, u in sender.sent} == {o.sop_instance_uid for i in ids for o in w.queue.outputs(i)}


def test_one_worker_runs_one_study_at_a_time(node) -> None:
    ids = [enqueue(node, f"study-{k}") for k in range(2)]
    w, gates = gated_worker(node, 1, Sender())
    w.tick()
    assert states(w, ids) == [RUNNING, QUEUED]
    release(gates, ids[0])
    release(gates, ids[1])
    wait_for(lambda: (w.tick(), states(w, ids) == [DONE, DONE])[1], 30, "both jobs to be done")


def test_a_stop_puts_every_run_in_progress_back_without_using_an_attempt(node) -> None:
    ids = [enqueue(node, f"study-{k}") for k in range(2)]
    w, gates = gated_worker(node, 2, Sender())
    w.tick()
    wait_for(lambda: all(started(gates, i) for i in ids), 30, "both runs to start")
    w.request_stop()
    w.stop_runs()
    assert w.active == {}
    assert states(w, ids) == [QUEUED, QUEUED] and [w.queue.get(i).attempts for i in ids] == [0, 0]
