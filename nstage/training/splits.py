"""Stratified splits of a cohort: k folds, and a validation share of a training split.

Strata: N stage (TNM 8) x number of positive stations (when station labels are known), so every fold
and split holds each stage in proportion.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from nstage.training.cache import CachedCase


def stratum(c: CachedCase) -> str:
    n = c.case.n_positive
    return f"{c.case.n_tnm8}/{'?' if n is None else min(n, 3)}"


def stratified_folds(cases: list[CachedCase], k: int, seed: int) -> list[np.ndarray]:
    """k disjoint index sets, each stratum dealt round-robin (after a seeded shuffle) over the folds."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        by[stratum(c)].append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0
    for key in sorted(by):
        idx = list(rng.permutation(by[key]))
        for n, i in enumerate(idx):
            folds[(start + n) % k].append(int(i))
        start = (start + len(idx)) % k
    return [np.array(sorted(f), np.int64) for f in folds]


def split_validation(cases: list[CachedCase], idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices: `fraction` of each stratum held for validation."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        by[stratum(cases[i])].append(int(i))
    train, val = [], []
    carry = 0.0
    for key in sorted(by):
        members = list(rng.permutation(by[key]))
        carry += fraction * len(members)
        n_val = int(np.floor(carry + 1e-9))
        carry -= n_val
        val += members[:n_val]
        train += members[n_val:]
    return np.array(sorted(train), np.int64), np.array(sorted(val), np.int64)
