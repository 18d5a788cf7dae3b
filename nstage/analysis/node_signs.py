"""CT signs inside one node candidate: calcium, fat, a low-density centre, and the density of its tissue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.analysis.node_settings import NodeSettings


@dataclass(frozen=True)
class CtSigns:
    """What the CT shows inside a node (result.json node fields of the same names)."""

    hu_mean: float  # mean CT number of the node's tissue (calcium left out)
    calcified: bool
    fat_containing: bool
    low_density_centre: bool


def ct_signs(hu: np.ndarray, signs_hu: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
             short_axis_mm: float, s: NodeSettings) -> CtSigns:
    """The signs of the node `mask` in a box around it: `hu` the CT, `signs_hu` the CT smoothed by
    `signs_sigma_mm` (both the box's), `spacing` (x, y, z) in mm."""
    sx, sy, sz = spacing
    voxel_ml = float(np.prod(spacing)) / 1000.0  # as Grid.voxel_volume_ml
    node_hu = hu[mask]
    calcified = float(np.mean(node_hu >= s.calcium_hu)) >= s.calcified_min_fraction
    soft_hu = node_hu[node_hu < s.calcium_hu]
    hu_mean = float(soft_hu.mean()) if soft_hu.size else float(node_hu.mean())
    # fat inside the node: fat-density voxels enclosed by node tissue (a fatty hilum or core), slice by slice
    filled = np.stack([ndimage.binary_fill_holes(sl) for sl in mask])
    interior = ndimage.binary_erosion(filled, structure=np.ones((1, 3, 3), bool))
    fat = interior & (signs_hu >= s.fat_hu[0]) & (signs_hu <= s.fat_hu[1])
    fat_ml = float(fat.sum()) * voxel_ml
    fat_containing = fat_ml >= s.fat_min_volume_ml or (not calcified and hu_mean <= s.fat_hu_mean_max)
    # low-density centre: the inner half (by depth) clearly lower than the rim around it, and not fat
    low_centre = False
    if short_axis_mm >= s.low_density_min_short_axis_mm and not calcified:
        depth = ndimage.distance_transform_edt(filled, sampling=(sz, sy, sx))
        inner = filled & (depth >= 0.5 * depth.max())
        rim = mask & ~inner & (depth >= 0.25 * depth.max())  # the outer quarter is partial volume with the fat around
        if inner.any() and rim.any():
            c, r = float(signs_hu[inner].mean()), float(signs_hu[rim].mean())
            low_centre = (r - c) >= s.low_density_drop_hu and c > s.fat_hu[1]
    return CtSigns(hu_mean, bool(calcified), bool(fat_containing), bool(low_centre))
