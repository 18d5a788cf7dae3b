"""Stage progress for long-running commands: what runs now and how long each stage took.

Log lines name stages and times only; callers must never put patient names or IDs in them.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("nstage")
_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("nstage_log_label", default="")
LOG_FORMAT = "%(asctime)s %(levelname)s %(label)s%(message)s"
# Libraries whose INFO lines are noise in a run's log: highdicom (a line for every copied module and attribute) and the
# SDK's DICOM loader ("No or invalid input path from the optional input port: None" on every run from a folder).
QUIET_LIBRARIES = ("highdicom", "monai.deploy.operators.dicom_data_loader_operator")


class StageTimer:
    """Collects per-stage wall times (seconds) and logs each stage as it starts and ends."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("%s%s ...", self.prefix, name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.timings[name] = round(self.timings.get(name, 0.0) + dt, 3)
            log.info("%s%s done in %.1f s", self.prefix, name, dt)


class ProgressBar:
    """Counts of a cohort's items and the time left, logged as one bar line per finished item.

    Skipped items (already done) count towards the total but not towards the rate the time left is
    estimated from. A line per item (not a redrawn terminal line) keeps the bar readable between the
    stage lines of parallel workers and in log files.
    """

    WIDTH = 24

    def __init__(self, total: int, label: str = "progress", clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.label = label
        self.clock = clock
        self.started = clock()
        self.counts = {"done": 0, "failed": 0, "skipped": 0}

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def seconds_left(self) -> float | None:
        """Wall seconds left at the rate so far (None before the first item that did work)."""
        worked = self.counts["done"] + self.counts["failed"]
        if worked == 0:
            return None
        return (self.clock() - self.started) / worked * (self.total - self.finished)

    def line(self) -> str:
        filled = round(self.WIDTH * self.finished / self.total) if self.total else self.WIDTH
        left = self.seconds_left()
        parts = [f"{self.counts['done']} done"] + [f"{self.counts[k]} {k}" for k in ("failed", "skipped") if self.counts[k]]
        return (f"{self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {self.finished}/{self.total} ({', '.join(parts)}); "
                f"{format_duration(self.clock() - self.started)} elapsed, "
                f"{'time left unknown' if left is None else 'about ' + format_duration(left) + ' left'}")

    def advance(self, status: str) -> str:
        """Count one finished item (`done`, `failed` or `skipped`), log the bar and return its line."""
        self.counts[status] += 1
        text = self.line()
        log.info("%s", text)
        return text


def format_duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@contextmanager
def log_label(label: str) -> Iterator[None]:
    """Prefix every log line of this thread/context with `label` (e.g. a study's folder name, never a patient ID)."""
    token = _LABEL.set(f"{label}: " if label else "")
    try:
        yield
    finally:
        _LABEL.reset(token)


class _LabelFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.label = _LABEL.get()
        return True


def configure_logging(verbose: bool = False) -> None:
    """Human-readable progress on stderr (lines carry the label of :func:`log_label` when one is set)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")
    quiet_library_loggers()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _LabelFilter) for f in handler.filters):
            handler.addFilter(_LabelFilter())


def quiet_library_loggers() -> None:
    """Libraries' INFO lines off (their warnings stay), unless the root logger is at DEBUG."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
