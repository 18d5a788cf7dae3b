"""Exponential retry delays (sending to a PACS that is down, restarting a crashed worker)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (n = failures so far, from 1): initial * factor**(n-1), capped at max."""

    initial_s: float
    factor: float = 2.0
    max_s: float = 300.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 <= initial_s <= max_s and factor >= 1, got {self}")

    def delay(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        # cap the exponent so that a long outage cannot overflow the float
        exponent = min(failures - 1, 64)
        return float(min(self.max_s, self.initial_s * self.factor**exponent))

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> Backoff:
        return cls(float(d["initial_s"]), float(d.get("factor", 2.0)), float(d.get("max_s", 300.0)))

    def as_dict(self) -> dict[str, float]:
        return {"initial_s": self.initial_s, "factor": self.factor, "max_s": self.max_s}
