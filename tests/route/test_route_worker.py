"""The worker's job steps without servers: a stand-in pipeline (tests/route_fake_pipeline.py), a
recording sender and a controllable clock. Crash recovery is tested by opening a new worker on
the same work folder, as a restart after SIGKILL does.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path

import pytest

from nstage.route.layout import input_dir, output_dir, run_dir
from nstage.route.queue import DONE, FAILED, QUEUED, SENDING, JobQueue
from nstage.route.sender import SendError
from nstage.route.worker import Worker
from tests.route.route_fake_pipeline import tiny_dicom

FAKE = Path(__file__).with_name("route_fake_pipeline.py")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Sender:
    """Records (file name, SOP Instance UID); fails while `down` > 0 or raises `die` after a number of sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = 0
        self.die_after: int | None = None
        self.die_before_ack = False

    def __call__(self, path: Path, dest, aet, *timeouts) -> None:
        import pydicom

        if self.die_after is not None and len(self.sent) >= self.die_after:
            raise KeyboardInterrupt("worker killed")
        if self.down > 0:
            self.down -= 1
            raise SendError("Association Request Failed: Connection refused")
        self.sent.append((path.name, str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)))
        if self.die_before_ack:
            self.die_before_ack = False
            raise KeyboardInterrupt("worker killed after the store, before recording it")


class FakeClient:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, level: str, orthanc_id: str) -> None:
        self.deleted.append(orthanc_id)

    def last_change(self) -> int:
        return 0


def make_worker(settings, mode: str, sender: Sender, clock: Clock, client: FakeClient | None = None) -> Worker:
    counter = settings.work / "runs.txt"

    def pipeline(inp: Path, out: Path, models: Path, rules: str) -> list[str]:
        return [sys.executable, str(FAKE), mode, str(counter), "-i", str(inp), "-o", str(out), "-m", str(models), "--rules", rules]

    return Worker(settings, client or FakeClient(), JobQueue(settings.queue_path), send=sender, clock=clock, pipeline=pipeline)


def enqueue(settings, key: str = "study-1") -> int:
    """A job with a one-instance input folder, as intake leaves it."""
    q = JobQueue(settings.queue_path)
    job, _ = q.add(key, "1.2.3.4", "f" * 64, 1, "CT,PT")
    q.close()
    inp = input_dir(settings.work, key, "f" * 64)
    inp.mkdir(parents=True)
    tiny_dicom(inp / "00000.dcm", "1.2.3.4", "1.2.840.10008.5.1.4.1.1.2", "CT")
    (inp / "instances.json").write_text('[{"orthanc_id": "orthanc-inst-1", "sop_instance_uid": "1.2.3.4.5"}]')
    return job.id


def runs(settings) -> int:
    p = settings.work / "runs.txt"
    return int(p.read_text()) if p.exists() else 0


def drain(worker: Worker, limit: int = 20) -> None:
    for _ in range(limit):
        if not worker.step():
            return
    raise AssertionError("the worker never ran out of due work")


def test_a_study_runs_once_and_each_result_is_sent_once(node) -> None:
    sender, clock, client = Sender(), Clock(), FakeClient()
    job_id = enqueue(node)
    w = make_worker(node, "ok", sender, clock, client)
    drain(w)
    job = w.queue.get(job_id)
    assert job.state == DONE and job.attempts == 1 and runs(node) == 1
    outs = w.queue.outputs(job_id)
    assert sorted(n for n, _ in sender.sent) == ["findings_sr.dcm", "report_pdf.dcm"]
    assert {u for _, u in sender.sent} == {o.sop_instance_uid for o in outs} and all(o.sent_at for o in outs)
    assert (output_dir(node.jobs_dir, job_id) / "result.json").is_file() and not run_dir(node.jobs_dir, job_id).exists()
    assert client.deleted == ["orthanc-inst-1"]  # the processed version leaves the node's Orthanc
    assert not input_dir(node.work, "study-1", "f" * 64).exists()


def test_bad_input_ends_failed_with_its_error_and_is_not_retried(node) -> None:
    sender, clock = Sender(), Clock()
    job_id = enqueue(node)
    w = make_worker(node, "input-error", sender, clock)
    drain(w)
    clock.t += 1e6
    assert not w.step()
    job = w.queue.get(job_id)
    assert job.state == FAILED and "PatientWeight (0010,1030) is missing" in job.error
    assert runs(node) == 1 and sender.sent == [] and not output_dir(node.jobs_dir, job_id).exists()


def test_a_crashing_pipeline_is_retried_after_a_backoff_then_fails(node) -> None:
    sender, clock = Sender(), Clock()
    job_id = enqueue(node)
    w = make_worker(node, "crash", sender, clock)
    for attempt in range(1, node.max_attempts + 1):
        assert w.step()
        job = w.queue.get(job_id)
        assert runs(node) == attempt and job.attempts == attempt
        if attempt < node.max_attempts:
            assert job.state == QUEUED and "exit status 1" in job.error
            assert not w.step()  # nothing due during the backoff
            clock.t = job.not_before
    job = w.queue.get(job_id)
    assert job.state == FAILED and f"{node.max_attempts} attempt" in job.error and sender.sent == []


def test_restart_after_outputs_were_persisted_sends_the_same_instances_without_rerunning(node) -> None:
    sender, clock = Sender(), Clock()
    job_id = enqueue(node)
    w = make_worker(node, "ok", sender, clock)
    assert w.step()  # the run: outputs persisted, state sending
    assert w.queue.get(job_id).state == SENDING
    sender.die_before_ack = True  # killed after the destination took the first file, before it was recorded
    with pytest.raises(KeyboardInterrupt):
        w.step()
    first_name, first_uid = sender.sent[0]
    restarted = make_worker(node, "ok", sender, clock)
    restarted.recover()
    drain(restarted)
    assert restarted.queue.get(job_id).state == DONE and runs(node) == 1  # never re-run
    names = [n for n, _ in sender.sent]
    assert names.count(first_name) == 2 and len(set(names)) == 2  # the first file again, the second once
    assert {u for n, u in sender.sent if n == first_name} == {first_uid}  # same SOP Instance UID: the PACS holds it once


def test_restart_after_a_kill_during_the_run_runs_it_again(node) -> None:
    sender, clock = Sender(), Clock()
    job_id = enqueue(node)
    q = JobQueue(node.queue_path)
    q.start_run(job_id)  # what a worker killed during the pipeline leaves behind
    half = run_dir(node.jobs_dir, job_id)
    half.mkdir(parents=True)
    (half / "partial.nii.gz").write_bytes(b"half written")
    w = make_worker(node, "ok", sender, clock)
    w.recover()
    assert w.queue.get(job_id).state == QUEUED and not half.exists()
    drain(w)
    job = w.queue.get(job_id)
    assert job.state == DONE and job.attempts == 2 and runs(node) == 1 and len(sender.sent) == 2


def test_destination_down_delays_results_with_backoff_until_it_returns(node) -> None:
    sender, clock = Sender(), Clock()
    sender.down = 4
    job_id = enqueue(node)
    w = make_worker(node, "ok", sender, clock)
    assert w.step()
    waits = []
    while w.queue.get(job_id).state == SENDING:
        if not w.step():
            waits.append(w.queue.get(job_id).not_before - clock.t)
            clock.t = w.queue.get(job_id).not_before
    job = w.queue.get(job_id)
    assert job.state == DONE and job.send_failures == 4 and len(sender.sent) == 2
    assert waits == [node.send_backoff.delay(n) for n in range(1, 5)]


def test_destination_gone_past_the_deadline_fails_the_job(node) -> None:
    node = dataclasses.replace(node, send_give_up_after_s=60.0)
    sender, clock = Sender(), Clock()
    sender.down = 10**6
    job_id = enqueue(node)
    w = make_worker(node, "ok", sender, clock)
    for _ in range(100):
        job = w.queue.get(job_id)
        if job.state != SENDING and job.attempts:
            break
        if not w.step():
            clock.t = job.not_before
    job = w.queue.get(job_id)
    assert job.state == FAILED and "gave up" in job.error and clock.t - 1000 >= node.send_give_up_after_s


def test_stop_during_the_run_leaves_the_job_queued_without_using_an_attempt(node) -> None:
    sender, clock = Sender(), Clock()
    job_id = enqueue(node)
    w = make_worker(node, "sleep", sender, clock)
    timer = threading.Timer(1.5, w.request_stop)
    timer.start()
    try:
        assert w.step()
    finally:
        timer.cancel()
    job = w.queue.get(job_id)
    assert job.state == QUEUED and job.attempts == 0 and not run_dir(node.jobs_dir, job_id).exists()


class StudiesClient:
    """Orthanc's answers about the studies it holds: id -> (stable, Orthanc instance IDs per modality)."""

    def __init__(self, studies: dict[str, tuple[bool, dict[str, list[str]]]]) -> None:
        self.held = studies

    def studies(self) -> list[str]:
        return list(self.held)

    def study(self, study_id: str) -> dict:
        return {"IsStable": self.held[study_id][0]}

    def study_instance_ids(self, study_id: str) -> dict[str, list[str]]:
        return {m: list(v) for m, v in self.held[study_id][1].items()}


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{k:04d}" for k in range(n)]


def test_studies_held_without_a_job_are_found_and_known_or_unstable_ones_are_not(node) -> None:
    from nstage.route.fingerprint import instances_digest
    from nstage.route.intake import studies_without_a_job

    q = JobQueue(node.queue_path)
    q.add("known", "1.1", "a" * 64, 120, "CT,PT", instances_digest=instances_digest(ids("k-ct", 80) + ids("k-pt", 40)))
    q.add("changed", "1.2", "b" * 64, 120, "CT,PT", instances_digest=instances_digest(ids("c-ct", 80) + ids("c-pt", 40)))
    q.add("replaced", "1.4", "d" * 64, 120, "CT,PT", instances_digest=instances_digest(ids("r-ct", 80) + ids("r-pt", 40)))
    q.add("ct-only", "1.3", "ignored:" + "c" * 64, 40, "CT", state="ignored", error="not a PET/CT study",
          instances_digest=instances_digest(ids("o-ct", 40)))
    q.add("legacy", "1.5", "e" * 64, 120, "CT,PT")  # recorded before digests were kept: its count decides
    client = StudiesClient({
        "known": (True, {"CT": ids("k-ct", 80), "PT": ids("k-pt", 40), "SR": ["sr"]}),  # results routed back do not make it new
        "changed": (True, {"CT": ids("c-ct", 80), "PT": ids("c-pt", 47)}),  # more instances than its job recorded
        "replaced": (True, {"CT": ids("r-ct", 80), "PT": ids("r2-pt", 40)}),  # a new PET of as many instances
        "ct-only": (True, {"CT": ids("o-ct", 40)}),
        "legacy": (True, {"CT": ids("l-ct", 80), "PT": ids("l-pt", 40)}),
        "unknown": (True, {"CT": ids("u-ct", 80), "PT": ids("u-pt", 40)}),
        "arriving": (False, {"CT": ids("a-ct", 12)}),  # still receiving: its StableStudy change is to come
    })
    assert studies_without_a_job(client, q, node) == ["changed", "replaced", "unknown"]


def test_a_queue_file_from_before_the_digest_gains_the_column_and_keeps_its_jobs(tmp_path) -> None:
    import sqlite3

    from nstage.route.queue import SCHEMA

    path = tmp_path / "queue.sqlite"
    old = SCHEMA.replace("  instances_digest TEXT NOT NULL DEFAULT '',\n", "")
    assert old != SCHEMA
    db = sqlite3.connect(path)
    db.executescript(old)
    db.execute("INSERT INTO jobs (study_key, study_uid, fingerprint, state, n_instances, created_at, updated_at) "
               "VALUES ('s', '1.2', 'f', 'done', 120, 0, 0)")
    db.commit()
    db.close()
    q = JobQueue(path)
    (job,) = q.jobs_of_study("s")
    assert job.n_instances == 120 and job.instances_digest == ""
    new, created = q.add("s", "1.2", "g", 120, "CT,PT", instances_digest="x" * 64)
    assert created and q.get(new.id).instances_digest == "x" * 64
