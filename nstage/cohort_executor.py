"""One executor for cohort work (synth, training caches, `nstage batch`, cohort benchmarks), on Dask distributed.

`--jobs N` starts an embedded `LocalCluster` of N worker processes with one thread each (Elastix
and torch are multi-threaded themselves); `--scheduler ADDRESS` joins a cluster the user already
runs (`dask scheduler` + `dask worker`, dask-jobqueue on Slurm/PBS, Dask on Kubernetes) and uses its
workers. `--jobs 1` without a scheduler runs in this process. Work items are mapped with a
picklable function; results come back as they complete. A task whose worker process dies (killed,
out of memory) is run again on another worker by the scheduler, up to `allowed_failures` deaths
(then the item ends with an error and the rest go on). A worker is given one task per thread at a
time (worker-saturation 1.0: no study waits behind another on a busy worker, and a worker's death
touches only the study it was running). A warm-up function runs once in every worker
process as it starts (a WorkerPlugin; again in a worker the nanny restarts): heavy objects (the
model, the atlas) are loaded there and kept by the per-process caches of the code that loads them.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nstage.errors import InputError
from nstage.progress import ProgressBar, configure_logging

log = logging.getLogger("nstage")
ALLOWED_FAILURES = 2  # worker deaths a task survives (rescheduled each time); the next one ends it with KilledWorker
# Dask's nanny would set these in every local worker: one OpenMP/BLAS thread (Elastix, torch and numpy are
# meant to use their threads here) and a malloc trim threshold that disables glibc's adaptive mmap threshold
# (measured: the generator's PET stage 3x slower, mostly in page faults). None leaves them unset.
LOCAL_WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": None}


@dataclass(frozen=True)
class ExecutorOptions:
    """Where cohort work runs: `jobs` local worker processes, or the workers of the cluster at `scheduler`."""

    jobs: int = 1
    scheduler: str | None = None
    allowed_failures: int = ALLOWED_FAILURES
    connect_timeout_s: float = 20.0  # how long to try reaching `scheduler`

    @property
    def in_process(self) -> bool:
        return self.jobs <= 1 and not self.scheduler

    def describe(self) -> str:
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        return "this process" if self.in_process else f"a local Dask cluster of {self.jobs} worker processes"


def add_executor_arguments(parser: argparse.ArgumentParser, jobs_help: str = "worker processes of the embedded Dask cluster") -> None:
    """The `--jobs` and `--scheduler` options every cohort command shares."""
    parser.add_argument("--jobs", type=int, default=1, help=f"{jobs_help} (1: in this process)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="join a running Dask cluster instead (e.g. tcp://10.0.0.5:8786); its workers need this environment and the data paths")


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """ExecutorOptions from parsed `--jobs` / `--scheduler`; InputError on a bad value."""
    if args.jobs < 1:
        raise InputError(f"--jobs must be at least 1 (got {args.jobs})")
    return ExecutorOptions(args.jobs, args.scheduler or None)


@dataclass(frozen=True)
class Outcome:
    """One work item's end: its index in the input, the item, and the function's value or an error line."""

    index: int
    item: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def error_text(exc: BaseException) -> str:
    """An error line: an InputError's own message, otherwise the exception's type and message."""
    return str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class WarmUp:
    """A function and its arguments, run once per worker process before it takes work (must be picklable)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = field(default_factory=tuple)

    def __call__(self) -> None:
        self.fn(*self.args)


def quiet_dask_logs() -> None:
    """Dask's own start/stop lines stay out of the progress log (warnings and errors still show)."""
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _worker_plugin(warm: WarmUp | None) -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class _Plugin(WorkerPlugin):
        name = "nstage-worker-setup"

        def __init__(self, warm: WarmUp | None) -> None:
            self.warm = warm

        def setup(self, worker: Any) -> None:
            quiet_dask_logs()
            configure_logging()  # the worker's stage lines go to its stderr (the terminal of a local cluster)
            if self.warm is not None:
                self.warm()

    return _Plugin(warm)


class CohortExecutor:
    """A context manager: start (or join) the cluster on entry, close what it started on exit."""

    def __init__(self, options: ExecutorOptions = ExecutorOptions(), warm: WarmUp | None = None) -> None:
        self.options = options
        self.warm = warm
        self.client: Any = None
        self.cluster: Any = None
        self._config: Any = None

    def __enter__(self) -> CohortExecutor:
        if self.options.in_process:
            if self.warm is not None:
                self.warm()
            return self
        import dask
        from distributed import Client, LocalCluster

        self._config = dask.config.set({"distributed.scheduler.allowed-failures": self.options.allowed_failures,
                                        "distributed.scheduler.worker-saturation": 1.0,
                                        "distributed.nanny.pre-spawn-environ": LOCAL_WORKER_ENVIRON})
        self._config.__enter__()
        quiet_dask_logs()
        try:
            if self.options.scheduler:
                self.client = Client(self.options.scheduler, timeout=f"{self.options.connect_timeout_s}s")
            else:
                self.cluster = LocalCluster(n_workers=self.options.jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                            silence_logs=logging.WARNING)
                self.client = Client(self.cluster)
            self.client.register_plugin(_worker_plugin(self.warm))
        except OSError as exc:
            self.__exit__(None, None, None)
            raise InputError(f"cannot reach the Dask scheduler at {self.options.scheduler} ({exc}); start it or check --scheduler") from exc
        except BaseException:
            self.__exit__(None, None, None)
            raise
        log.info("cohort work on %s", self.options.describe())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id (empty when running in this process)."""
        if self.client is None:
            return {}
        return dict(self.client.run(os.getpid))

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Outcome]:
        """fn(item) for every item, yielded as each completes; an exception (or the loss of its workers) is the item's error."""
        work = list(items)
        if self.client is None:
            for i, item in enumerate(work):
                try:
                    yield Outcome(i, item, fn(item))
                except Exception as exc:  # noqa: BLE001 - one item's failure is its outcome; the rest go on
                    yield Outcome(i, item, error=error_text(exc))
            return
        from distributed import as_completed

        futures = {self.client.submit(fn, item, pure=False): i for i, item in enumerate(work)}
        for fut in as_completed(futures):
            i = futures.pop(fut)
            try:
                yield Outcome(i, work[i], fut.result())
            except Exception as exc:  # noqa: BLE001 - KilledWorker after allowed_failures deaths, or fn's own exception
                yield Outcome(i, work[i], error=error_text(exc))
            finally:
                fut.release()


def as_options(jobs: int | ExecutorOptions) -> ExecutorOptions:
    """ExecutorOptions from a plain worker count (the older `jobs=N` arguments) or as given."""
    return jobs if isinstance(jobs, ExecutorOptions) else ExecutorOptions(max(1, int(jobs)))


def map_all(fn: Callable[[Any], Any], items: Iterable[Any], options: int | ExecutorOptions = 1, warm: WarmUp | None = None,
            label: str | None = None) -> list[Any]:
    """fn over every item, values in input order; the first failed item raises (RuntimeError with its error line).

    With `label`, a progress bar line is logged as each item completes.
    """
    work = list(items)
    values: list[Any] = [None] * len(work)
    bar = ProgressBar(len(work), label) if label else None
    with CohortExecutor(as_options(options), warm) as ex:
        for o in ex.map(fn, work):
            if not o.ok:
                raise RuntimeError(f"item {o.index + 1} of {len(work)} failed: {o.error}")
            values[o.index] = o.value
            if bar is not None:
                bar.advance("done")
    return values
