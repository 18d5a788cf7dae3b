"""Platt scaling's fit by damped Newton steps on a loss given as sums (its value, gradient and Hessian in (a, b)).

The federated calibration (nstage.training.federated.calibration) pools those sums over the sites: the server holds
a NewtonFit, asks for the sums at its candidate points and takes the next step from what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

A_MIN = 0.05  # as the central fit: a scale below it is clamped
STEPS = (1.0, 0.5, 0.25, 0.125, 0.03125)


@dataclass
class NewtonFit:
    """The server's side of one member's calibration."""

    point: tuple[float, float] = (1.0, 0.0)
    loss: float | None = None  # mean loss at `point`
    grad: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hess: np.ndarray = field(default_factory=lambda: np.eye(2))
    candidates: list[tuple[float, float]] = field(default_factory=lambda: [(1.0, 0.0)])
    done: bool = False
    rounds: int = 0

    def direction(self) -> np.ndarray:
        h = np.asarray(self.hess, float)
        low = float(np.linalg.eigvalsh(h).min()) if np.all(np.isfinite(h)) else -1.0
        if low <= 1e-12:  # not positive definite: shift it until it is (a gradient step when it is far off)
            h = h + (1e-6 - low + 1e-12) * np.eye(2)
        return -np.linalg.solve(h, self.grad)

    def update(self, pooled: list[tuple[float, np.ndarray, np.ndarray]], tolerance: float) -> None:
        """Take the sites' pooled (mean loss, gradient, Hessian) at the candidates; choose the next candidates."""
        self.rounds += 1
        if self.loss is None:  # the first round: the start point only
            self.loss, self.grad, self.hess = pooled[0]
            if not np.isfinite(self.loss):  # no validation terms anywhere: no calibration, as the central fit
                self.done = True
                return
        else:
            d = np.array(self.candidates[0]) - np.array(self.point)
            slope = float(self.grad @ d)
            accepted = None
            for c, (loss, g, h), s in zip(self.candidates, pooled, STEPS):
                if np.isfinite(loss) and loss <= self.loss + 1e-4 * s * min(slope, 0.0) and loss <= self.loss:
                    accepted = (c, loss, g, h)
                    break
            if accepted is None:
                self.done = True  # no step lowers the loss: this is the optimum to the precision at hand
                return
            self.point, self.loss, self.grad, self.hess = accepted[0], accepted[1], accepted[2], accepted[3]
        if not np.all(np.isfinite(self.grad)) or np.max(np.abs(self.grad)) < tolerance:
            self.done = True
            return
        d = self.direction()
        a, b = self.point
        self.candidates = [(max(a + s * d[0], A_MIN), b + s * d[1]) for s in STEPS]

    @property
    def result(self) -> tuple[float, float]:
        return float(max(self.point[0], A_MIN)), float(self.point[1])
