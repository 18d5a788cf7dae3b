"""Stage progress for long-running commands: what runs now and how long each stage took.

Log lines name stages and times only; callers must never put patient names or IDs in them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("nstage")


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


def configure_logging(verbose: bool = False) -> None:
    """Human-readable progress on stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
