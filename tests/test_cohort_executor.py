"""The cohort executor: in this process, and on a real LocalCluster of 2 worker processes (warm-up once per
process, results as they complete, a task whose worker dies runs again elsewhere, a task that kills every
worker it gets ends with an error while the rest go on)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nstage.cohort_executor import CohortExecutor, ExecutorOptions, WarmUp, map_all
from nstage.errors import InputError


def _square(x: int) -> int:
    if x < 0:
        raise InputError(f"negative item {x}: give a positive one")
    return x * x


def _warm(folder: str) -> None:
    Path(folder, f"warm-{os.getpid()}").write_text("")


def _pid_of_task(args: tuple[str, int]) -> int:
    return os.getpid()


def _die_once(args: tuple[str, int]) -> int:
    """Kill the own worker process the first time item `n` runs (a marker file remembers it)."""
    folder, n = args
    marker = Path(folder, f"died-{n}")
    if n == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    Path(folder, f"ran-{n}-{os.getpid()}").write_text("")
    return n


def _die_always(n: int) -> int:
    if n == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return n


def test_in_process_map_gives_values_and_error_lines() -> None:
    with CohortExecutor(ExecutorOptions(1)) as ex:
        outcomes = sorted(ex.map(_square, [3, -1, 2]), key=lambda o: o.index)
    assert [o.value for o in outcomes] == [9, None, 4]
    assert outcomes[1].error == "negative item -1: give a positive one"
    with pytest.raises(RuntimeError, match="item 2 of 2 failed: negative item -5"):
        map_all(_square, [1, -5])


def test_local_cluster_warms_each_worker_once_and_keeps_order(tmp_path: Path) -> None:
    with CohortExecutor(ExecutorOptions(2), WarmUp(_warm, (str(tmp_path),))) as ex:
        workers = set(ex.worker_pids().values())
        pids = [o.value for o in ex.map(_pid_of_task, [(str(tmp_path), i) for i in range(6)])]
    assert len(workers) == 2 and os.getpid() not in workers
    assert set(pids) <= workers
    assert sorted(p.name for p in tmp_path.glob("warm-*")) == sorted(f"warm-{p}" for p in workers)  # once per process, not per task
    assert map_all(_square, range(5), ExecutorOptions(2)) == [0, 1, 4, 9, 16]


def test_a_task_whose_worker_dies_runs_again_on_a_worker_and_once_to_the_end(tmp_path: Path) -> None:
    with CohortExecutor(ExecutorOptions(2)) as ex:
        outcomes = list(ex.map(_die_once, [(str(tmp_path), n) for n in range(4)]))
    assert sorted(o.value for o in outcomes) == [0, 1, 2, 3] and all(o.ok for o in outcomes)
    assert (tmp_path / "died-1").exists()
    assert len(list(tmp_path.glob("ran-1-*"))) == 1  # finished once, after the death
    assert not (tmp_path / f"ran-1-{(tmp_path / 'died-1').read_text()}").exists()  # not by the dead process


def test_a_task_that_kills_every_worker_ends_with_an_error_and_the_rest_go_on() -> None:
    with CohortExecutor(ExecutorOptions(2, allowed_failures=1)) as ex:
        outcomes = {o.index: o for o in ex.map(_die_always, [0, 1, 2])}
    assert [outcomes[i].value for i in (1, 2)] == [1, 2]
    assert not outcomes[0].ok and "KilledWorker" in outcomes[0].error


def test_joins_a_running_cluster_by_its_address_and_leaves_it_running(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with CohortExecutor(ExecutorOptions(scheduler=cluster.scheduler_address), WarmUp(_warm, (str(tmp_path),))) as ex:
            workers = set(ex.worker_pids().values())
            pids = {o.value for o in ex.map(_pid_of_task, [(str(tmp_path), i) for i in range(3)])}
        assert pids == workers and len(workers) == 1
        assert [p.name for p in tmp_path.glob("warm-*")] == [f"warm-{workers.pop()}"]
        assert len(cluster.scheduler_info["workers"]) == 1  # the cluster is the user's: still there


def test_an_unreachable_scheduler_is_an_error_line() -> None:
    with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 \(.*\); start it or check --scheduler"):
        with CohortExecutor(ExecutorOptions(scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)):
            pass
