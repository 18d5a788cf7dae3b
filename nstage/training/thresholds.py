"""Operating thresholds of a trained station network, chosen on the validation split."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from nstage.training.weak_labels import WeakTargets, known_negatives


class Targets(Protocol):
    """What a threshold reads of a validation example (nstage.training.train.Example)."""

    @property
    def truth(self) -> np.ndarray | None: ...

    @property
    def weak(self) -> WeakTargets: ...


def specificity_threshold(negative_scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold (calls at >=) that leaves at least `specificity` of the negatives below it."""
    neg = np.sort(np.asarray(negative_scores, float))
    if neg.size == 0:
        return 0.5
    k = int(np.ceil(specificity * neg.size)) - 1  # the k-th smallest negative must stay below
    return float(np.nextafter(neg[min(max(k, 0), neg.size - 1)], np.inf))


def operating_threshold(probs: list[np.ndarray], val: list[Targets], supervised: bool, specificity: float) -> float:
    """The probability threshold of `specificity` on the validation stations known to be benign
    (supervised: station labels; weak: the stations of groups the N stage calls negative)."""
    if supervised:
        neg = np.concatenate([p[e.truth == 0] for p, e in zip(probs, val)]) if val else np.zeros(0)
    else:
        neg = np.concatenate([known_negatives(p, e.weak) for p, e in zip(probs, val)]) if val else np.zeros(0)
    return specificity_threshold(neg, specificity)


CATEGORIES = ("N1", "N2", "N3")


def category_maxima(probs: np.ndarray, stations: list[str], tumour_side: str, rules: str = "tnm") -> np.ndarray:
    """(3,) the highest station probability among a case's N1, N2 and N3 stations (0 where it has none)."""
    from nstage.analysis.nrules import station_category

    out = np.zeros(len(CATEGORIES))
    for p, s in zip(np.asarray(probs, float), stations):
        k = CATEGORIES.index(station_category(s, tumour_side, rules))
        out[k] = max(out[k], p)
    return out


class StagedCase(Protocol):
    """What the staging rule reads of a case (nstage.training.cache.CachedCase): its stations and its record."""

    @property
    def stations(self) -> list[str]: ...

    @property
    def case(self) -> Any: ...  # .tumour_side, .n_tnm8


def staging_inputs(probs: list[np.ndarray], cases: list[StagedCase], rules: str = "tnm") -> tuple[np.ndarray, np.ndarray]:
    """(C, 3) the N1/N2/N3 category maxima of the cases' station probabilities and (C,) their TNM 8 level."""
    maxima = np.array([category_maxima(p, c.stations, c.case.tumour_side, rules) for p, c in zip(probs, cases)]).reshape(-1, 3)
    return maxima, np.array([int(c.case.n_tnm8[1]) for c in cases], np.int64)


def staged_at(maxima: np.ndarray, threshold: float) -> np.ndarray:
    """(C,) TNM 8 level 0-3 of each case when stations at or above `threshold` are called (highest category wins)."""
    called = np.asarray(maxima) >= threshold
    return np.where(called[:, 2], 3, np.where(called[:, 1], 2, np.where(called[:, 0], 1, 0)))


def staging_threshold(maxima: np.ndarray, n_levels: np.ndarray) -> float:
    """The threshold whose station calls stage the most validation patients right (TNM 8; their N stage is
    the weak label itself, so no station label is read). Calls change only at the cases' category maxima, so
    the candidates are the intervals between them; among equally good intervals the widest in logit space is
    taken, and its logit midpoint returned. The two open ends (below the lowest maximum: its value; above the
    highest: just above it) count as zero wide, so they are taken only when strictly better."""
    maxima, n_levels = np.asarray(maxima, float).reshape(-1, 3), np.asarray(n_levels)
    if maxima.size == 0:
        return 0.5
    edges = np.unique(np.clip(maxima[maxima > 0], 1e-7, 1 - 1e-7))
    if edges.size == 0:
        return 0.5
    logit = np.log(edges) - np.log1p(-edges)
    uppers = list(edges) + [float(np.nextafter(edges[-1], np.inf))]  # calls at >= upper end: every interval's rule
    acc = np.array([np.mean(staged_at(maxima, t) == n_levels) for t in uppers])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    widths = np.array([logit[k] - logit[k - 1] if 0 < k < edges.size else 0.0 for k in best])
    k = int(best[int(np.argmax(widths))])
    if k == 0 or k == edges.size:
        return float(uppers[k])
    mid = 0.5 * (logit[k - 1] + logit[k])
    return float(max(1.0 / (1.0 + np.exp(-mid)), np.nextafter(edges[k - 1], np.inf)))


def operating_point(probs: list[np.ndarray], val: list[Targets], maxima: np.ndarray, n_levels: np.ndarray,
                    threshold: float, supervised: bool) -> dict[str, float | int]:
    """What the threshold gives on the validation split: N-stage accuracy (TNM 8) and the specificity on the
    stations the N stage says are benign (weak: station labels are not read even where a cohort has them) or
    on the stations labelled benign (supervised)."""
    neg = [p[e.truth == 0] if supervised else known_negatives(p, e.weak) for p, e in zip(probs, val)]
    neg_all = np.concatenate(neg) if neg else np.zeros(0)
    staged = staged_at(np.asarray(maxima, float).reshape(-1, 3), threshold) if len(val) else np.zeros(0)
    return {"validation_cases": len(val),
            "validation_n_stage_accuracy": float(np.mean(staged == np.asarray(n_levels))) if len(val) else float("nan"),
            "validation_benign_stations": int(neg_all.size),
            "validation_benign_specificity": float(np.mean(neg_all < threshold)) if neg_all.size else float("nan")}
