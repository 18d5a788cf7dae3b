"""Majority-vote fusion of station label maps from several atlases (on the same patient grid)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def majority_vote(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Per voxel, the label (background included) that most maps give.

    Ties go to the tied label given by the earliest map in `maps` (pass them best first).
    """
    if not maps:
        raise ValueError("majority_vote needs at least one label map")
    shape = maps[0].shape
    if any(m.shape != shape for m in maps):
        raise ValueError("all label maps must have the same shape")
    if len(maps) == 1:
        return maps[0].copy()
    stack = np.stack([np.asarray(m).ravel() for m in maps])  # (n_maps, n_voxels)
    out = np.zeros(stack.shape[1], dtype=maps[0].dtype)
    where = np.flatnonzero(stack.any(axis=0))  # only voxels some map labels
    if where.size == 0:
        return out.reshape(shape)
    votes = stack[:, where]
    n = votes.shape[0]
    best = np.zeros(where.size, dtype=votes.dtype)
    best_count = np.full(where.size, -1, np.int32)
    best_rank = np.full(where.size, n, np.int32)
    for value in np.unique(votes):
        hit = votes == value
        count = hit.sum(axis=0).astype(np.int32)
        rank = np.where(hit.any(axis=0), hit.argmax(axis=0), n).astype(np.int32)  # first map giving it
        better = (count > best_count) | ((count == best_count) & (rank < best_rank))
        best[better], best_count[better], best_rank[better] = value, count[better], rank[better]
    out[where] = best
    return out.reshape(shape)
