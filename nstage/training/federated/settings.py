"""The federation's settings, read from `config/federated.json` (the network and its training: config/classifier.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nstage import paths
from nstage.errors import InputError

FILTERS = ("none", "percentile", "svt")


@dataclass(frozen=True)
class Grid:
    """The logits on which thresholds are chosen and histograms binned (probability = sigmoid of a grid point)."""

    logit_min: float = -12.0
    logit_max: float = 12.0
    step_logit: float = 0.01

    def thresholds(self) -> np.ndarray:
        """(G,) the grid's probability thresholds, ascending."""
        n = int(round((self.logit_max - self.logit_min) / self.step_logit)) + 1
        return 1.0 / (1.0 + np.exp(-(self.logit_min + self.step_logit * np.arange(n))))


@dataclass(frozen=True)
class FederatedSettings:
    local_epochs: int = 1
    grid: Grid = field(default_factory=Grid)
    calibration_rounds: int = 12
    gradient_tolerance: float = 1e-6
    privacy_filter: str = "none"
    filter_args: dict[str, Any] = field(default_factory=dict)
    task_request_interval_s: float = 0.05
    proximal_mu: float = 0.0  # FedProx's mu (0: FedAvg)
    server_lr: float = 1.0  # the server optimiser's step (1 with momentum 0: FedAvg's mean)
    server_momentum: float = 0.0  # FedAvgM's server momentum (0: none)

    def as_dict(self) -> dict[str, Any]:
        """What the job carries to the server (JSON)."""
        g = self.grid
        return {"local_epochs": self.local_epochs, "grid": {"logit_min": g.logit_min, "logit_max": g.logit_max, "step_logit": g.step_logit},
                "calibration_rounds": self.calibration_rounds, "gradient_tolerance": self.gradient_tolerance,
                "privacy_filter": self.privacy_filter, "filter_args": dict(self.filter_args),
                "task_request_interval_s": self.task_request_interval_s, "proximal_mu": self.proximal_mu,
                "server_lr": self.server_lr, "server_momentum": self.server_momentum}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FederatedSettings":
        g = d.get("grid", {})
        s = cls(int(d.get("local_epochs", 1)), Grid(float(g.get("logit_min", -12.0)), float(g.get("logit_max", 12.0)),
                                                    float(g.get("step_logit", 0.01))),
                int(d.get("calibration_rounds", 12)), float(d.get("gradient_tolerance", 1e-6)), str(d.get("privacy_filter", "none")),
                dict(d.get("filter_args", {})), float(d.get("task_request_interval_s", 0.05)), float(d.get("proximal_mu", 0.0)),
                float(d.get("server_lr", 1.0)), float(d.get("server_momentum", 0.0)))
        s.check()
        return s

    @property
    def aggregation(self) -> str:
        """How the sites' weights make the next global ones, in words (the exported model's record)."""
        local = "FedAvg" if self.proximal_mu == 0 else f"FedProx (mu {self.proximal_mu:g})"
        if self.server_lr == 1.0 and self.server_momentum == 0.0:
            return local
        return f"{local} with server SGD (lr {self.server_lr:g}, momentum {self.server_momentum:g})"

    def check(self) -> None:
        if self.local_epochs < 1:
            raise InputError(f"local_epochs must be at least 1 (got {self.local_epochs})")
        if self.privacy_filter not in FILTERS:
            raise InputError(f"privacy_filter.kind must be one of {', '.join(FILTERS)} (got {self.privacy_filter!r})")
        g = self.grid
        if not (g.step_logit > 0 and g.logit_max > g.logit_min):
            raise InputError("grid: step_logit must be positive and logit_max above logit_min")
        if not self.proximal_mu >= 0.0:
            raise InputError(f"fedprox.mu must be 0 (FedAvg) or positive (got {self.proximal_mu})")
        if not self.server_lr > 0.0:
            raise InputError(f"server_optimizer.lr must be positive (got {self.server_lr})")
        if not 0.0 <= self.server_momentum < 1.0:
            raise InputError(f"server_optimizer.momentum must be in [0, 1) (got {self.server_momentum})")
        if self.calibration_rounds < 1:
            raise InputError("calibration.max_rounds must be at least 1")


def federated_settings(path: Path | None = None, privacy_filter: str | None = None) -> FederatedSettings:
    """config/federated.json (or PATH), with the privacy filter overridden when given."""
    path = Path(path) if path else paths.config_dir() / "federated.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the federation settings {path}: {exc}") from exc
    kind = privacy_filter or raw.get("privacy_filter", {}).get("kind", "none")
    cal = raw.get("calibration", {})
    return FederatedSettings.from_dict({
        "local_epochs": raw.get("local_epochs", 1), "grid": raw.get("grid", {}),
        "calibration_rounds": cal.get("max_rounds", 12), "gradient_tolerance": cal.get("gradient_tolerance", 1e-6),
        "privacy_filter": kind, "filter_args": raw.get("privacy_filter", {}).get(kind, {}) if kind != "none" else {},
        "task_request_interval_s": raw.get("simulator", {}).get("task_request_interval_s", 0.05),
        "proximal_mu": raw.get("fedprox", {}).get("mu", 0.0),
        "server_lr": raw.get("server_optimizer", {}).get("lr", 1.0), "server_momentum": raw.get("server_optimizer", {}).get("momentum", 0.0)})
