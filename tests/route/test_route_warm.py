"""The worker with warm pipeline worker processes (nstage/route/warm_pool.py, `pipeline.mode` warm), without servers.

The processes are the real `python -m nstage.route.study_server` with the stand-in study and warm-up
functions of tests/route/route_fake_pipeline.py: each process leaves `warm-<pid>` when it warms up and
`<job>.<pid>` for every study it starts, so the tests see which process ran what and how often one loaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nstage.route.layout import output_dir, run_dir
from nstage.route.queue import DONE, FAILED, QUEUED, RUNNING, JobQueue
from nstage.route.warm_pool import WarmPool, server_command
from nstage.route.worker import Worker
from tests.route.route_harness import wait_for
from tests.route.test_route_worker import Clock, FakeClient, Sender, enqueue

SERVER = ("{python}", "-m", "nstage.route.study_server", "--models", "{models}", "--rules", "{rules}",
          "--study", "tests.route.route_fake_pipeline:warm_study", "--warm-up", "tests.route.route_fake_pipeline:warm_up")


@pytest.fixture()
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fake"
    folder.mkdir()
    monkeypatch.setenv("FAKE_DIR", str(folder))
    monkeypatch.setenv("FAKE_MODE", "ok")
    return folder


def warm_worker(settings, workers: int = 1, sender: Sender | None = None, clock: Clock | None = None,
                extra: tuple[str, ...] = ()) -> Worker:
    import dataclasses

    s = dataclasses.replace(settings, workers=workers)
    pool = WarmPool(server_command(SERVER + extra, s.models, s.rules), workers, stop_timeout_s=10)
    return Worker(s, FakeClient(), JobQueue(s.queue_path), send=sender or Sender(), clock=clock or Clock(), pool=pool)


def warm_ups(folder: Path) -> list[int]:
    """Process ids that warmed up (loaded 'model and atlas')."""
    return sorted(int(p.name.split("-", 1)[1]) for p in folder.glob("warm-*"))


def runs_of(folder: Path, job_id: int) -> list[int]:
    """Process ids that started the job's study."""
    return [int(p.suffix[1:]) for p in folder.glob(f"{job_id:06d}.*")]


def settle(w: Worker, ids: list[int], want: list[str], timeout_s: float = 60) -> None:
    wait_for(lambda: (w.tick(), [w.queue.get(i).state for i in ids] == want)[1], timeout_s, f"jobs {ids} to be {want}")


def test_studies_run_one_after_another_in_one_warm_process_that_loaded_once(node, fake_dir: Path) -> None:
    sender = Sender()
    ids = [enqueue(node, f"study-{k}") for k in range(3)]
    w = warm_worker(node, sender=sender, extra=("--torch-threads", "1"))
    try:
        w.pool.start()
        settle(w, ids, [DONE] * 3)
        (pid,) = warm_ups(fake_dir)  # one process, warmed up once
        assert (fake_dir / f"warm-{pid}").read_text().endswith("torch-threads=1")
        assert [runs_of(fake_dir, i) for i in ids] == [[pid]] * 3  # and it ran every study
        assert w.pool.started == 1 and w.pool.pids() == [pid]
        assert all((output_dir(node.jobs_dir, i) / "result.json").is_file() for i in ids)
        assert len(sender.sent) == 6 and len({u for _, u in sender.sent}) == 6
    finally:
        w.stop_runs()
    wait_for(lambda: not _alive(pid), 15, "the warm process to end with the worker's stop")


def test_a_warm_process_killed_during_a_study_is_replaced_and_the_study_redone(node, fake_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "gated")
    clock = Clock()
    job = enqueue(node)
    w = warm_worker(node, clock=clock)
    try:
        w.tick()
        first = wait_for(lambda: runs_of(fake_dir, job), 30, "the study to start")[0]
        os.kill(first, signal.SIGKILL)  # a crash of the process (out of memory, segfault) in the middle of the study
        wait_for(lambda: (w.tick(), w.queue.get(job).state == QUEUED)[1], 30, "the run to end as crashed")
        j = w.queue.get(job)
        assert j.attempts == 1 and "ended with signal SIGKILL during the study" in j.error
        assert not run_dir(node.jobs_dir, job).exists()  # the half-written run folder is gone
        clock.t = j.not_before  # after the retry backoff
        (fake_dir / f"go-{job:06d}").write_text("")
        settle(w, [job], [DONE])
        second = [p for p in runs_of(fake_dir, job) if p != first]
        assert len(second) == 1 and warm_ups(fake_dir) == sorted([first, second[0]])  # a fresh process, warmed up once
        assert w.queue.get(job).attempts == 2 and w.pool.started == 2
    finally:
        w.stop_runs()


def test_bad_input_fails_its_job_and_the_process_takes_the_next_study(node, fake_dir: Path) -> None:
    bad, good = enqueue(node, "bad"), enqueue(node, "good")
    (fake_dir / f"mode-{bad:06d}").write_text("input-error")
    w = warm_worker(node)
    try:
        settle(w, [bad, good], [FAILED, DONE])
        assert "PatientWeight (0010,1030) is missing" in w.queue.get(bad).error and w.queue.get(bad).attempts == 1
        assert w.pool.started == 1 and len(warm_ups(fake_dir)) == 1  # no new process for a study's own error
        assert runs_of(fake_dir, bad) == runs_of(fake_dir, good)
    finally:
        w.stop_runs()


def test_a_crashing_analysis_is_retried_in_the_same_process(node, fake_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "crash")
    clock = Clock()
    job = enqueue(node)
    w = warm_worker(node, clock=clock)
    try:
        for attempt in range(1, node.max_attempts + 1):
            wait_for(lambda: (w.tick(), w.queue.get(job).state in (QUEUED, FAILED) and w.queue.get(job).attempts == attempt)[1], 30,
                     f"attempt {attempt} to end")
            clock.t = w.queue.get(job).not_before
        j = w.queue.get(job)
        assert j.state == FAILED and "RuntimeError: simulated crash" in j.error and f"{node.max_attempts} attempt" in j.error
        assert w.pool.started == 1 and len(set(runs_of(fake_dir, job))) == 1
    finally:
        w.stop_runs()


def test_a_study_past_the_timeout_kills_its_process(node, fake_dir: Path, monkeypatch) -> None:
    import dataclasses

    monkeypatch.setenv("FAKE_MODE", "gated")
    job = enqueue(node)
    w = warm_worker(dataclasses.replace(node, pipeline_timeout_s=3.0))
    try:
        wait_for(lambda: (w.tick(), w.queue.get(job).state == QUEUED and w.queue.get(job).attempts == 1)[1], 60, "the timeout")
        assert "did not finish within 3 s" in w.queue.get(job).error
        (pid,) = runs_of(fake_dir, job)
        assert not _alive(pid)
    finally:
        w.stop_runs()


def test_a_stop_during_a_study_puts_it_back_without_using_an_attempt(node, fake_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "gated")
    job = enqueue(node)
    w = warm_worker(node)
    w.tick()
    pid = wait_for(lambda: runs_of(fake_dir, job), 30, "the study to start")[0]
    w.request_stop()
    w.stop_runs()
    j = w.queue.get(job)
    assert j.state == QUEUED and j.attempts == 0 and not run_dir(node.jobs_dir, job).exists()
    assert w.active == {} and not _alive(pid)


def test_two_warm_processes_run_two_studies_at_once(node, fake_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "gated")
    ids = [enqueue(node, f"study-{k}") for k in range(3)]
    w = warm_worker(node, workers=2)
    try:
        w.tick()
        assert [w.queue.get(i).state for i in ids] == [RUNNING, RUNNING, QUEUED]
        wait_for(lambda: runs_of(fake_dir, ids[0]) and runs_of(fake_dir, ids[1]), 30, "both studies to start")
        assert runs_of(fake_dir, ids[0]) != runs_of(fake_dir, ids[1])  # in two processes
        for i in ids:
            (fake_dir / f"go-{i:06d}").write_text("")
        settle(w, ids, [DONE] * 3)
        assert w.pool.started == 2 and len(warm_ups(fake_dir)) == 2
    finally:
        w.stop_runs()


def test_the_worker_process_takes_its_warm_processes_with_it_when_killed(tmp_path: Path, fake_dir: Path) -> None:
    """SIGKILL of the process that owns the pool (the node's worker): its warm processes die too (PR_SET_PDEATHSIG)."""
    script = ("import sys, time\n"
              "from nstage.route.warm_pool import WarmPool\n"
              f"pool = WarmPool(list(sys.argv[1:]), 2)\npool.start()\nprint(' '.join(map(str, pool.pids())), flush=True)\ntime.sleep(120)\n")
    cmd = server_command(SERVER, tmp_path, "tnm")
    owner = subprocess.Popen([sys.executable, "-c", script, *cmd], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2
        wait_for(lambda: len(warm_ups(fake_dir)) == 2, 30, "both processes to warm up")
        owner.kill()
        owner.wait()
        wait_for(lambda: not any(_alive(p) for p in pids), 15, "the warm processes to die with their owner")
    finally:
        owner.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False



@pytest.mark.parametrize("runner", ["module", "program", "auto"])
def test_the_real_warm_up_loads_model_atlas_and_elastix_once(runner: str) -> None:
    """nstage.runner.warm_up (the default warm-up of the node's processes): the network and the atlas are in the process
    afterwards, and a second call loads nothing again; Elastix's ITK libraries too unless Elastix runs as its programs
    (config/registration.json elastix_runner; `auto` runs them where they are on PATH)."""
    from nstage.stationmap.elastix_program import programs

    if runner == "program" and programs() is None:
        pytest.skip("Elastix's programs are not on PATH (scripts/install-system-deps.sh installs Debian's elastix)")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nstage.pipeline import RunOptions\n"
        "from nstage.runner import warm_up\n"
        "from nstage.analysis.classifier.slot import _load_cnn\n"
        "from nstage.stationmap.atlas import _load_folder\n"
        "warm_up(Path('models'), RunOptions(registration='elastix'))\n"
        "loaded = ('itk._ElastixPython' in sys.modules, 'itk._itkTransformixFilterPython' in sys.modules,\n"
        "          _load_cnn.cache_info().currsize, _load_folder.cache_info().currsize)\n"
        "warm_up(Path('models'), RunOptions(registration='elastix'))\n"
        "from nstage.stationmap.registration_settings import resolve_runner\n"
        "print(*loaded, _load_cnn.cache_info().misses, _load_folder.cache_info().misses, resolve_runner(sys.argv[1]))\n"
    )
    from tests.route.route_harness import REPO

    done = subprocess.run([sys.executable, "-c", script, runner], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "NSTAGE_ELASTIX_RUNNER": runner})
    assert done.returncode == 0, done.stderr[-2000:]
    ran = runner if runner != "auto" else ("program" if programs() is not None else "module")
    itk = str(ran == "module")
    # loaded as the runner needs, and not again by the second call; the process keeps the runner it warmed up for
    assert done.stdout.split() == [itk, itk, "1", "1", "1", "1", ran]
