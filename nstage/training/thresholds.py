"""Operating thresholds of a trained station network, chosen on the validation split."""

from __future__ import annotations

from typing import Protocol

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
