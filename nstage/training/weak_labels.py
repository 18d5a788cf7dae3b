"""Weak labels from the N stage (clinical-rules.md section 3) and the losses that use them.

Stations pool into G1/G2/G3 by tumour side (nstage.analysis.nrules.weak_label_groups); each group's
target comes from the N stage (nstage.analysis.nrules.group_targets: 1, 0 or unknown). A group's score
pools its station logits (multiple-instance pooling): the maximum as the seed paper ("max"), a
log-sum-exp mean ("lse", sharpness r: between the mean and the maximum, so a second positive
station also gets gradient) or noisy-or ("noisy_or": the group is positive unless every station is
negative). Unknown groups add nothing.
Optionally TNM 9 adds a count constraint on the N2 stations (nstage.analysis.nrules.n2_count_constraint):
N2a = exactly one positive, N2b = at least two, enforced on the sorted N2 logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nstage.analysis.nrules import group_targets, n2_count_constraint, weak_label_groups


@dataclass(frozen=True)
class WeakTargets:
    """The weak supervision of one case: known groups (station indices, target) and a count rule."""

    groups: tuple[tuple[np.ndarray, int], ...]
    count: tuple[np.ndarray, int, int | None] | None  # (N2 station indices, min, max) or None


def weak_targets(stations: list[str], tumour_side: str, n_tnm8: str, n_tnm9: str | None = None, rules: str = "tnm",
                 count_constraint: bool = False) -> WeakTargets:
    """Group targets of one case over its stations (indices into `stations`); unknown groups left out."""
    groups = weak_label_groups(tumour_side, rules)
    targets = group_targets(n_tnm8)
    index = {s: n for n, s in enumerate(stations)}
    known = []
    for g, members in groups.items():
        idx = np.array([index[s] for s in members if s in index], np.int64)
        if targets[g] is not None and idx.size:
            known.append((idx, int(targets[g])))
    count = None
    if count_constraint and n_tnm9:
        c = n2_count_constraint(n_tnm9)
        idx = np.array([index[s] for s in groups["G2"] if s in index], np.int64)
        if c is not None and idx.size:
            count = (idx, c[0], c[1])
    return WeakTargets(tuple(known), count)


POOLINGS = ("max", "lse", "noisy_or")


def _group_bce(logits: torch.Tensor, target: int, pooling: str, lse_r: float) -> torch.Tensor:
    """BCE of one group's pooled score against its target."""
    if pooling == "noisy_or":
        s = F.softplus(logits).sum()  # -log P(no station positive)
        return -torch.log((-torch.expm1(-s)).clamp_min(1e-7)) if target else s
    if pooling == "lse":
        score = (torch.logsumexp(lse_r * logits, dim=0) - math.log(logits.numel())) / lse_r
    elif pooling == "max":
        score = logits.max()
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    return F.binary_cross_entropy_with_logits(score, score.new_tensor(float(target)))


def weak_loss(logits: torch.Tensor, t: WeakTargets, pos_weight: float = 1.0, pooling: str = "max",
              lse_r: float = 4.0) -> tuple[torch.Tensor, int]:
    """Sum of the group BCE terms of one case (pooled logits) and the number of terms."""
    terms = []
    for idx, target in t.groups:
        terms.append((pos_weight if target else 1.0) * _group_bce(logits[torch.as_tensor(idx)], target, pooling, lse_r))
    if t.count is not None:
        idx, lo, hi = t.count
        ranked = torch.sort(logits[torch.as_tensor(idx)], descending=True).values
        if lo >= 1 and ranked.numel() >= lo:  # the lo-th highest N2 station must be positive
            terms.append(pos_weight * F.binary_cross_entropy_with_logits(ranked[lo - 1], ranked.new_tensor(1.0)))
        if hi is not None and ranked.numel() > hi:  # the (hi+1)-th highest must be negative
            terms.append(F.binary_cross_entropy_with_logits(ranked[hi], ranked.new_tensor(0.0)))
    if not terms:
        return logits.sum() * 0.0, 0
    return torch.stack(terms).sum(), len(terms)


def supervised_loss(logits: torch.Tensor, truth: np.ndarray, pos_weight: float = 1.0) -> tuple[torch.Tensor, int]:
    """Station-level BCE (the fully supervised upper bound) of one case."""
    y = torch.as_tensor(truth, dtype=logits.dtype, device=logits.device)
    w = torch.where(y > 0.5, torch.full_like(y, pos_weight), torch.ones_like(y))
    return F.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="sum"), int(y.numel())


def group_scores(probs: np.ndarray, t: WeakTargets) -> list[tuple[float, int]]:
    """(max probability, target) of each known group: what weak validation can score."""
    return [(float(probs[idx].max()), target) for idx, target in t.groups]


def known_negatives(probs: np.ndarray, t: WeakTargets) -> np.ndarray:
    """Probabilities of the stations in the case's negative groups: stations the N stage says are benign."""
    idx = [i for g, target in t.groups if not target for i in g]
    return np.asarray(probs, float)[np.unique(np.array(idx, np.int64))] if idx else np.zeros(0)
