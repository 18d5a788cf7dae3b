"""Platt scaling pooled over the sites: the loss of nstage.training.train.calibrate, minimised by damped Newton steps.

The central fit minimises the mean weak loss of sigmoid(a * z + b) over the validation split's groups (no class
weights, a >= 0.05). That mean is a sum over patients, so over sites: each site returns, at the points the server
asks for, the sum of its terms, their number, and the sum's gradient and Hessian in (a, b). The server's
nstage.training.platt.NewtonFit takes a Newton step on the pooled sums and tries it at a few step lengths in the next
round, until the gradient vanishes or the rounds run out.
"""

from __future__ import annotations

import numpy as np
import torch

from nstage.training.platt import A_MIN
from nstage.training.train import Example, _case_losses


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
