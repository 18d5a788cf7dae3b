"""Routing node without servers: queue state machine, backoff, fingerprint, settings, Orthanc config."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nstage.errors import InputError
from nstage.route.backoff import Backoff
from nstage.route.config import load_or_create_credentials, orthanc_config
from nstage.route.fingerprint import fingerprint, folder_fingerprint
from nstage.route.queue import (
    DONE,
    FAILED,
    IGNORED,
    QUEUED,
    RUNNING,
    SENDING,
    SUPERSEDED,
    InvalidTransition,
    JobQueue,
    OutputFile,
)
from nstage.route.settings import (
    CallingPeer,
    DicomPeer,
    NodeSettings,
    build_settings,
    check_aet,
)

B = Backoff(1.0, 2.0, 8.0)


@pytest.fixture()
def queue(tmp_path: Path) -> JobQueue:
    q = JobQueue(tmp_path / "q.sqlite")
    yield q
    q.close()


def _outs(*names: str) -> list[OutputFile]:
    return [OutputFile(n, f"1.2.3.{i}", "1.2.840.10008.5.1.4.1.1.104.1", "DOC", "ab" * 32) for i, n in enumerate(names)]


# --- state machine ------------------------------------------------------------------------------

def test_happy_path_queued_running_sending_done(queue: JobQueue) -> None:
    job, created = queue.add("study-a", "1.2.3", "fp1", 10, "CT,PT", now=100)
    assert created and job.state == QUEUED and job.attempts == 0
    assert queue.next_due(100).id == job.id
    assert queue.start_run(job.id, now=101).state == RUNNING
    assert queue.get(job.id).attempts == 1
    j = queue.run_succeeded(job.id, _outs("seg.dcm", "sr.dcm"), now=102)
    assert j.state == SENDING and [o.name for o in queue.unsent(job.id)] == ["seg.dcm", "sr.dcm"]
    with pytest.raises(InvalidTransition, match="unsent"):
        queue.finish(job.id)
    queue.mark_sent(job.id, "seg.dcm", now=103)
    with pytest.raises(InvalidTransition, match="already sent"):
        queue.mark_sent(job.id, "seg.dcm")
    queue.mark_sent(job.id, "sr.dcm", now=104)
    done = queue.finish(job.id, now=105)
    assert done.state == DONE and done.finished_at == 105 and done.error is None
    assert queue.next_due(1e12) is None


def test_same_study_version_is_recorded_once_and_a_changed_one_is_new(queue: JobQueue) -> None:
    a, created_a = queue.add("study-a", "1.2.3", "fp1", 10, "CT,PT")
    again, created_again = queue.add("study-a", "1.2.3", "fp1", 10, "CT,PT")
    changed, created_changed = queue.add("study-a", "1.2.3", "fp2", 11, "CT,PT")
    assert created_a and not created_again and again.id == a.id
    assert created_changed and changed.id != a.id
    assert queue.supersede_queued("study-a", changed.id) == [a.id]
    assert queue.get(a.id).state == SUPERSEDED and str(changed.id) in queue.get(a.id).error
    assert queue.get(changed.id).state == QUEUED


def test_transitions_refuse_the_wrong_starting_state(queue: JobQueue) -> None:
    job, _ = queue.add("s", "1", "fp", 1, "CT,PT")
    with pytest.raises(InvalidTransition):
        queue.finish(job.id)
    with pytest.raises(InvalidTransition):
        queue.send_failed(job.id, "x", B, 100)
    queue.start_run(job.id)
    with pytest.raises(InvalidTransition, match="running, not queued"):
        queue.start_run(job.id)
    with pytest.raises(InvalidTransition):
        queue.add("s", "1", "other", 1, "CT,PT", state=RUNNING)


def test_bad_input_fails_at_once_and_transient_failures_back_off_then_fail(queue: JobQueue) -> None:
    bad, _ = queue.add("bad", "1", "fp", 1, "CT,PT")
    queue.start_run(bad.id, now=0)
    j = queue.run_failed(bad.id, "PatientWeight missing", permanent=True, backoff=B, max_attempts=3, now=1)
    assert j.state == FAILED and j.error == "PatientWeight missing"
    crash, _ = queue.add("crash", "2", "fp", 1, "CT,PT")
    t = 10.0
    for attempt in (1, 2):
        queue.start_run(crash.id, now=t)
        j = queue.run_failed(crash.id, "segfault", permanent=False, backoff=B, max_attempts=3, now=t)
        assert j.state == QUEUED and j.not_before == t + B.delay(attempt)
        assert queue.next_due(t) is None  # not before its backoff
        t = j.not_before
        assert queue.next_due(t).id == crash.id
    queue.start_run(crash.id, now=t)
    j = queue.run_failed(crash.id, "segfault", permanent=False, backoff=B, max_attempts=3, now=t)
    assert j.state == FAILED and "3 attempt" in j.error and j.attempts == 3


def test_interrupted_run_counts_the_attempt_only_when_the_worker_died(queue: JobQueue) -> None:
    job, _ = queue.add("s", "1", "fp", 1, "CT,PT")
    queue.start_run(job.id)
    assert queue.interrupted(job.id, count_attempt=False).attempts == 0
    queue.start_run(job.id)
    j = queue.interrupted(job.id, count_attempt=True)
    assert j.state == QUEUED and j.attempts == 1


def test_send_failures_back_off_and_give_up_after_the_deadline(queue: JobQueue) -> None:
    job, _ = queue.add("s", "1", "fp", 1, "CT,PT")
    queue.start_run(job.id, now=0)
    queue.run_succeeded(job.id, _outs("a.dcm"), now=0)
    t = 0.0
    delays = []
    for _ in range(4):
        j = queue.send_failed(job.id, "connection refused", B, give_up_after_s=100, now=t)
        assert j.state == SENDING and j.first_send_failure_at == 0
        delays.append(j.not_before - t)
        t = j.not_before
    assert delays == [1, 2, 4, 8]
    j = queue.send_failed(job.id, "connection refused", B, give_up_after_s=100, now=100)
    assert j.state == FAILED and "gave up" in j.error and j.send_failures == 5


def test_retry_puts_a_failed_job_back_where_it_can_continue(queue: JobQueue) -> None:
    job, _ = queue.add("s", "1", "fp", 1, "CT,PT")
    queue.start_run(job.id)
    queue.run_succeeded(job.id, _outs("a.dcm"))
    queue.give_up(job.id, "destination gone")
    j = queue.retry(job.id)
    assert j.state == SENDING and j.attempts == 0 and j.error is None
    other, _ = queue.add("t", "2", "fp", 1, "CT,PT")
    queue.start_run(other.id)
    queue.run_failed(other.id, "bad", permanent=True, backoff=B, max_attempts=3)
    assert queue.retry(other.id).state == QUEUED
    with pytest.raises(InvalidTransition):
        queue.retry(other.id)


def test_queue_and_cursor_survive_reopening(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.sqlite")
    job, _ = q.add("s", "1", "fp", 3, "CT,PT")
    q.start_run(job.id)
    q.add("ct-only", "2", "ignored:x", 1, "CT", state=IGNORED, error="not a PET/CT study")
    q.set_cursor(42)
    q.close()
    ro = JobQueue(tmp_path / "q.sqlite", readonly=True)
    assert ro.cursor() == 42
    assert ro.get(job.id).state == RUNNING and ro.get(job.id).attempts == 1
    assert ro.counts()[IGNORED] == 1 and ro.counts()[RUNNING] == 1
    with pytest.raises(Exception):
        ro.set_cursor(1)  # read-only: the status command cannot change the queue
    ro.close()


# --- backoff and fingerprint ---------------------------------------------------------------------

def test_backoff_grows_geometrically_and_is_capped() -> None:
    b = Backoff(5, 2, 300)
    seq = [b.delay(n) for n in range(0, 12)]
    assert seq[:5] == [0, 5, 10, 20, 40]
    assert all(x <= y for x, y in zip(seq, seq[1:])) and max(seq) == 300
    assert b.delay(10_000) == 300
    for bad in ((-1, 2, 10), (5, 0.5, 10), (20, 2, 10)):
        with pytest.raises(ValueError):
            Backoff(*bad)


def test_fingerprint_ignores_arrival_order_and_sees_any_change(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    base = folder_fingerprint([("1.1", a), ("1.2", b)])
    assert base == folder_fingerprint([("1.2", b), ("1.1", a)])
    assert base != folder_fingerprint([("1.1", a)])  # an instance missing
    b.write_bytes(b"two, altered")
    assert base != folder_fingerprint([("1.1", a), ("1.2", b)])  # same UIDs, other bytes
    assert fingerprint([("1.1", "x"), ("1.1", "x")]) == fingerprint([("1.1", "x")])


# --- settings and the generated Orthanc configuration --------------------------------------------

def test_dicom_peer_and_ae_title_parsing() -> None:
    p = DicomPeer.parse("PACS@10.0.0.5:104")
    assert (p.aet, p.host, p.port) == ("PACS", "10.0.0.5", 104) and str(p) == "PACS@10.0.0.5:104"
    for bad in ("PACS@host", "PACS:104", "@h:1", "PACS@h:0", "WAY_TOO_LONG_AE_TITLE@h:104"):
        with pytest.raises(InputError):
            DicomPeer.parse(bad)
    assert check_aet(" NODE ") == "NODE"
    with pytest.raises(InputError):
        check_aet("BAD\\AET")
    assert CallingPeer.parse("CT1") == CallingPeer("CT1", "127.0.0.1")


def test_settings_default_to_the_destination_as_the_only_caller_and_round_trip(tmp_path: Path) -> None:
    s = build_settings("NODE", 11112, "PACS@127.0.0.1:4242", tmp_path / "w", http_port=18042)
    assert s.allowed == (CallingPeer("PACS", "127.0.0.1"),)
    assert s.stable_age_s == json.loads((Path(__file__).parents[2] / "config" / "route.json").read_text())["stable_age_s"]
    s.work.mkdir()
    s.save()
    assert NodeSettings.load(s.work) == s
    with pytest.raises(InputError, match="models folder"):
        build_settings("NODE", 11112, "PACS@127.0.0.1:4242", tmp_path / "w", models=tmp_path / "nope")
    with pytest.raises(InputError, match="stable-age"):
        build_settings("NODE", 11112, "PACS@127.0.0.1:4242", tmp_path / "w", stable_age_s=0)


def test_orthanc_config_is_locked_down(tmp_path: Path) -> None:
    cfg = orthanc_config(name="n", aet="NODE", dicom_port=11112, http_port=18042, storage_dir=tmp_path / "s", index_dir=tmp_path / "s",
                         users={"u": "p"}, allowed=[CallingPeer("PACS", "10.0.0.5"), CallingPeer("CT1", "127.0.0.1")], stable_age_s=30)
    assert cfg["RemoteAccessAllowed"] is False and cfg["AuthenticationEnabled"] is True and cfg["RegisteredUsers"] == {"u": "p"}
    assert cfg["DicomAlwaysAllowStore"] is False and cfg["DicomAlwaysAllowEcho"] is False and cfg["DicomCheckModalityHost"] is True
    assert cfg["DicomCheckCalledAet"] is True and cfg["Plugins"] == [] and cfg["ExecuteLuaEnabled"] is False and cfg["WebDavEnabled"] is False
    assert cfg["StableAge"] == 30 and cfg["DeidentifyLogs"] is True
    mods = cfg["DicomModalities"].values()
    assert {(m["AET"], m["Host"]) for m in mods} == {("PACS", "10.0.0.5"), ("CT1", "127.0.0.1")}
    assert all(m["AllowStore"] and not m["AllowFind"] and not m["AllowMove"] and not m["AllowGet"] for m in mods)


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    user, pw = load_or_create_credentials(path, "nstage")
    assert user == "nstage" and len(pw) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_credentials(path, "nstage") == (user, pw)
    other = load_or_create_credentials(tmp_path / "other.json", "nstage")[1]
    assert other != pw


# --- the command line ------------------------------------------------------------------------------

def test_status_and_retry_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nstage.cli import main

    assert main(["route", "status", "--work", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "give the --work folder of a node" in err
    q = JobQueue(tmp_path / "queue.sqlite")
    ok, _ = q.add("study-ok", "1.2.3", "fp", 5, "CT,PT")
    q.start_run(ok.id)
    q.run_succeeded(ok.id, _outs("a.dcm"))
    q.mark_sent(ok.id, "a.dcm")
    q.finish(ok.id)
    bad, _ = q.add("study-bad", "1.2.4", "fp", 5, "CT,PT")
    q.start_run(bad.id)
    q.run_failed(bad.id, "PatientWeight missing", permanent=True, backoff=B, max_attempts=3)
    q.close()
    assert main(["route", "status", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "done 1" in out and "failed 1" in out and "PatientWeight missing" in out and " 1/1 " in out
    assert main(["route", "status", "--work", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [j["state"] for j in data["jobs"]] == ["done", "failed"] and data["jobs"][0]["outputs"][0]["sent_at"]
    assert main(["route", "retry", "--work", str(tmp_path), str(ok.id)]) == 2  # only failed jobs
    assert main(["route", "retry", "--work", str(tmp_path), str(bad.id)]) == 0
    assert JobQueue(tmp_path / "queue.sqlite", readonly=True).get(bad.id).state == QUEUED


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    from nstage.route.supervisor import check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(InputError, match="in use"):
            check_port_free(s.getsockname()[1], "127.0.0.1", "DICOM port --port")
