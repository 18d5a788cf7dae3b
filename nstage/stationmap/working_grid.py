"""A CT at the registration's working resolution: axis-aligned LPS grid, isotropic voxels."""

from __future__ import annotations

import numpy as np

from nstage.geometry import Grid, corners_lps, downsample_mean, resample

AIR_HU = -1000.0


def working_copy(hu: np.ndarray, grid: Grid, spacing_mm: float) -> tuple[np.ndarray, Grid]:
    """The CT resampled onto an axis-aligned grid of `spacing_mm` covering it (outside: air).

    Fine in-plane voxels are first averaged in blocks (less noise and aliasing, and faster).
    """
    factors = tuple(max(1, int(np.floor(spacing_mm / s))) for s in grid.spacing[::-1])  # (k, j, i)
    small, small_grid = downsample_mean(hu, grid, factors)
    c = corners_lps(grid)
    target = Grid.covering(c.min(axis=0), c.max(axis=0), (spacing_mm,) * 3)
    out = resample(small, small_grid, target, order=1, fill=AIR_HU)
    return out.astype(np.float32), target


def crop(array: np.ndarray, grid: Grid, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, Grid]:
    """The part of an axis-aligned grid's array inside the LPS box [lo, hi] (clipped to the grid)."""
    a = np.floor(grid.lps_to_index(np.minimum(lo, hi))).astype(int)
    b = np.ceil(grid.lps_to_index(np.maximum(lo, hi))).astype(int)
    n = np.array(grid.shape[::-1])
    a = np.clip(a, 0, n - 1)
    b = np.clip(b, 0, n - 1)
    sl = (slice(a[2], b[2] + 1), slice(a[1], b[1] + 1), slice(a[0], b[0] + 1))
    sub = Grid(shape=(b[2] - a[2] + 1, b[1] - a[1] + 1, b[0] - a[0] + 1), spacing=grid.spacing,
               origin=tuple(grid.index_to_lps(a.astype(float))), direction=grid.direction)
    return array[sl], sub
