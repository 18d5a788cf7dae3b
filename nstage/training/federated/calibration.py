"""Platt scaling pooled over the sites: the loss of nstage.training.train.calibrate, minimised by damped Newton steps.

The central fit minimises the mean weak loss of sigmoid(a * z + b) over the validation split's groups (no class
weights, a >= 0.05). That mean is a sum over patients, so over sites: each site returns, at the points the server
asks for, the sum of its terms, their number, and the sum's gradient and Hessian in (a, b). The server takes a
Newton step on the pooled sums and tries it at a few step lengths in the next round (the first that lowers the loss
enough wins), until the gradient vanishes or the rounds run out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from nstage.training.train import Example, _case_losses

A_MIN = 0.05  # as the central fit: a scale below it is clamped
STEPS = (1.0, 0.5, 0.25, 0.125, 0.03125)


def site_terms(logits: list[np.ndarray], examples: list[Example], points: list[tuple[float, float]], pooling: tuple[str, float]) -> list[dict]:
    """Per point: {"loss": sum of the loss terms, "n": their number, "grad": (2,), "hess": (2, 2)} over a site's
    validation examples (raw, uncalibrated station logits)."""
    zs = [torch.from_numpy(np.asarray(z)).double() for z in logits]
    n = _case_losses(zs, examples, False, 1.0, *pooling)[1] if zs else 0
    out = []
    for a0, b0 in points:
        def total(ab: torch.Tensor) -> torch.Tensor:
            a = ab[0].clamp_min(A_MIN)
            return _case_losses([a * z + ab[1] for z in zs], examples, False, 1.0, *pooling)[0]

        x = torch.tensor([a0, b0], dtype=torch.float64, requires_grad=True)
        loss = total(x)
        if n == 0:
            out.append({"loss": 0.0, "n": 0, "grad": np.zeros(2), "hess": np.zeros((2, 2))})
            continue
        grad = torch.autograd.grad(loss, x)[0] if loss.requires_grad else torch.zeros(2, dtype=torch.float64)
        hess = torch.autograd.functional.hessian(total, x.detach())
        out.append({"loss": float(loss.detach()), "n": int(n), "grad": grad.numpy().copy(), "hess": hess.numpy().copy()})
    return out


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


def pooled(per_site: list[list[dict]]) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Sum the sites' terms per candidate and divide by the pooled number of terms: (mean loss, gradient, Hessian)."""
    out = []
    for terms in zip(*per_site):
        n = sum(int(t["n"]) for t in terms)
        if n == 0:
            out.append((float("nan"), np.zeros(2), np.eye(2)))
            continue
        out.append((sum(float(t["loss"]) for t in terms) / n, sum(np.asarray(t["grad"], float) for t in terms) / n,
                    sum(np.asarray(t["hess"], float) for t in terms) / n))
    return out
