"""Platt scaling's fit by damped Newton steps on a loss given as sums (its value, gradient and Hessian in (a, b)).

Each round the fit tries the step at a few lengths along one line and keeps, of those that lower the loss enough,
the one of the lowest loss. The scale is bounded below (a >= A_MIN) and at most halved in one round: a longer step
is shortened on its line, and on the bound the fit moves b alone while the loss still falls towards smaller a. (The
loss of a pooled weak label is not convex in (a, b); a long first step from a = 1 can land in a worse basin.)

Until 2026-12-08 the scale was clamped coordinate by coordinate, which left the Newton line, and the first step that
lowered the loss won: a fit that once reached the bound stayed there. One member of every federated run of the
shipped recipe ended at a = 0.05 with a pooled loss of 0.527 where L-BFGS on the same fold found a = 0.43 at 0.397.

The federated calibration (nstage.training.federated.calibration) pools those sums over the sites: the server holds
a NewtonFit, asks for the sums at its candidate points and takes the next step from what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

A_MIN = 0.05  # as the central fit: a scale below it is clamped
STEPS = (1.0, 0.5, 0.25, 0.125, 0.03125)


@dataclass
class NewtonFit:
    """One fit's state from round to round: the federated server's per member, or central training's."""

    point: tuple[float, float] = (1.0, 0.0)
    loss: float | None = None  # mean loss at `point`
    grad: np.ndarray = field(default_factory=lambda: np.zeros(2))
    hess: np.ndarray = field(default_factory=lambda: np.eye(2))
    candidates: list[tuple[float, float]] = field(default_factory=lambda: [(1.0, 0.0)])
    done: bool = False
    rounds: int = 0

    def direction(self) -> np.ndarray:
        """Newton's direction, its Hessian shifted to positive definite where it is not, or the gradient's where
        Newton's does not descend; on the bound a = A_MIN, when that direction leads below it, Newton's step in b alone."""
        g = np.asarray(self.grad, float)
        h = np.asarray(self.hess, float)
        low = float(np.linalg.eigvalsh(h).min()) if np.all(np.isfinite(h)) else -1.0
        if low <= 1e-12:  # not positive definite: shift it until it is (a gradient step when it is far off)
            h = h + (1e-6 - low + 1e-12) * np.eye(2)
        d = -np.linalg.solve(h, g)
        if float(g @ d) >= 0.0:
            d = -g
        if self.point[0] <= A_MIN and d[0] < 0.0:
            d = np.array([0.0, -g[1] / h[1, 1]])
        return d

    def update(self, pooled: list[tuple[float, np.ndarray, np.ndarray]], tolerance: float) -> None:
        """Take the sites' pooled (mean loss, gradient, Hessian) at the candidates; choose the next candidates."""
        self.rounds += 1
        if self.loss is None:  # the first round: the start point only
            self.loss, self.grad, self.hess = pooled[0]
            if not np.isfinite(self.loss):  # no validation terms anywhere: no calibration, as the central fit
                self.done = True
                return
        else:
            accepted = None  # of the steps that lower the loss enough (Armijo), the one of the lowest loss
            for c, (loss, g, h) in zip(self.candidates, pooled):
                slope = float(self.grad @ (np.array(c) - np.array(self.point)))
                if np.isfinite(loss) and loss <= self.loss + 1e-4 * min(slope, 0.0) and loss <= self.loss \
                        and (accepted is None or loss < accepted[1]):
                    accepted = (c, loss, g, h)
            if accepted is None:
                self.done = True  # no step lowers the loss: this is the optimum to the precision at hand
                return
            self.point, self.loss, self.grad, self.hess = accepted[0], accepted[1], accepted[2], accepted[3]
        if not np.all(np.isfinite(self.grad)) or np.max(np.abs(self.grad)) < tolerance:
            self.done = True
            return
        d = self.direction()
        a, b = self.point
        # on Newton's line, the scale at most halved in one round (a scale far below the start is reached in a few
        # rounds, not by one long step past a better optimum), never below the bound
        longest = 1.0 if d[0] >= 0.0 else min(1.0, 0.5 * a / -d[0], (a - A_MIN) / -d[0])
        self.candidates = [(max(a + longest * s * d[0], A_MIN), b + longest * s * d[1]) for s in STEPS]

    @property
    def result(self) -> tuple[float, float]:
        return float(max(self.point[0], A_MIN)), float(self.point[1])


Terms = Callable[[list[tuple[float, float]]], list[tuple[float, np.ndarray, np.ndarray]]]


def newton_fit(terms: Terms, rounds: int = 12, tolerance: float = 1e-6) -> tuple[float, float]:
    """(a, b) from (1, 0) by NewtonFit, where `terms` gives the mean loss, its gradient and Hessian at given points."""
    fit = NewtonFit()
    while not fit.done and fit.rounds < rounds:
        fit.update(terms(list(fit.candidates)), tolerance)
    return fit.result
