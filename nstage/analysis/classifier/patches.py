"""Station patches: the ONE extraction used by the training cache and by inference.

A patch is an axis-aligned LPS cube of `cache_size` voxels at `spacing_mm` around a centre:
channel 0 CT (HU windowed to [0, 1]), channel 1 SUV (scaled from `suv_range` to [0, 1]),
channel 2 the station's mask. Arrays are ``[c, k, j, i]`` with k along S, j along P, i along L
(LPS axes). Each station gives two: a fine node patch on its index node and a coarse context
patch on its bounding box (settings.PatchSettings). The network sees a `size` crop: random
while training (augmentation), centred at inference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from nstage.analysis.classifier.settings import Cube, PatchSettings
from nstage.geometry import Grid, resample


def patch_grid(centre_lps: np.ndarray, cube: Cube) -> Grid:
    """The cached-patch grid: `cache_size`^3 voxels of `spacing_mm`, centred on a LPS point."""
    n, s = cube.cache_size, cube.spacing_mm
    origin = np.asarray(centre_lps, float) - s * (n - 1) / 2.0
    return Grid((n, n, n), (s, s, s), tuple(origin))


def station_centres(stations: np.ndarray, grid: Grid) -> dict[int, np.ndarray]:
    """LPS centre of each labelled station's bounding box (in voxel-centre coordinates)."""
    out: dict[int, np.ndarray] = {}
    for lab, box in enumerate(ndimage.find_objects(np.asarray(stations, np.int32)), start=1):
        if box is None:
            continue
        lo = np.array([box[2].start, box[1].start, box[0].start], float)  # (i, j, k)
        hi = np.array([box[2].stop - 1, box[1].stop - 1, box[0].stop - 1], float)
        corners = grid.index_to_lps(np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]))
        out[lab] = (corners.min(axis=0) + corners.max(axis=0)) / 2.0
    return out


def scale_ct(hu: np.ndarray, settings: PatchSettings) -> np.ndarray:
    lo, hi = settings.ct_window
    return np.clip((hu - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def scale_suv(suv: np.ndarray, settings: PatchSettings) -> np.ndarray:
    lo, hi = settings.suv_range
    return np.clip((suv - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def extract_patches(hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid, stations: np.ndarray,
                    centres: Mapping[int, np.ndarray], cube: Cube, settings: PatchSettings) -> np.ndarray:
    """(S, 3, n, n, n) CT / SUV / mask cubes of `cube` around each station label's centre, in the order of `centres`."""
    n = cube.cache_size
    out = np.zeros((len(centres), 3, n, n, n), np.float32)
    lab_map = np.asarray(stations)
    for s, (lab, centre) in enumerate(centres.items()):
        g = patch_grid(centre, cube)
        out[s, 0] = scale_ct(resample(hu, ct_grid, g, order=1, fill=-1000.0), settings)
        out[s, 1] = scale_suv(resample(suv, pet_grid, g, order=1, fill=0.0), settings)
        out[s, 2] = resample(lab_map, ct_grid, g, order=0, fill=0) == lab
    return out


def crop(patches: np.ndarray, size: int, offset: tuple[int, int, int] | None = None) -> np.ndarray:
    """A `size`^3 crop of ``(..., D, D, D)`` patches at `offset` (k, j, i); centred when None."""
    d = patches.shape[-1]
    if offset is None:
        c = (d - size) // 2
        offset = (c, c, c)
    k, j, i = offset
    if min(offset) < 0 or max(offset) > d - size:
        raise ValueError(f"crop offset {offset} outside a {d}^3 patch for size {size}")
    return patches[..., k:k + size, j:j + size, i:i + size]
