"""CT signs inside one node candidate: calcium, fat, a low-density centre, and the density of its tissue.

- calcified: at least `calcified_min_fraction` of the node, or `calcified_min_volume_mm3` deeper than
  `calcified_min_depth_mm` inside its outline, at calcium density (a radiologist calls a node
  calcified for any dense focus; calcium on its border may be a neighbour's, such as a cartilage ring);
- fat_containing: fat enclosed by node tissue (`fat_min_volume_ml`), fat in a notch of its outline
  (at least `fat_min_notch_fraction` of its slice-by-slice convex hull, in nodes of at least
  `fat_notch_min_short_axis_mm`: a fatty hilum opens to the node's margin, so it is not enclosed;
  in a smaller node a notch is a few voxels of outline), or a mean density at fat level inside it
  (its voxels one pixel in from the outline, in plane: the outline's own voxels are partial volume
  with the fat around; a node with no such voxel is not resolved, and gets no density call);
- low_density_centre: the inner half of a node of `low_density_min_short_axis_mm` or more is
  `low_density_drop_hu` below the ring around it (central necrosis), and not fat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

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
    # any dense focus of calcium within the node a reader would call (a granuloma's core is often a few
    # per cent of the node); at its border it may be a neighbour's (a tracheal cartilage ring, a plaque)
    filled = np.stack([ndimage.binary_fill_holes(sl) for sl in mask])
    plane_depth = np.stack([ndimage.distance_transform_edt(sl, sampling=(sy, sx)) for sl in filled])  # mm
    deep = mask & (plane_depth > s.calcified_min_depth_mm)
    focus_mm3 = float(np.count_nonzero(hu[deep] >= s.calcium_hu)) * voxel_ml * 1000.0
    calcified = float(np.mean(node_hu >= s.calcium_hu)) >= s.calcified_min_fraction or focus_mm3 >= s.calcified_min_volume_mm3
    soft_hu = node_hu[node_hu < s.calcium_hu]
    hu_mean = float(soft_hu.mean()) if soft_hu.size else float(node_hu.mean())
    # fat inside the node: fat-density voxels enclosed by node tissue (a fat core), slice by slice
    interior = ndimage.binary_erosion(filled, structure=np.ones((1, 3, 3), bool))
    fat = interior & (signs_hu >= s.fat_hu[0]) & (signs_hu <= s.fat_hu[1])
    fat_ml = float(fat.sum()) * voxel_ml
    # or a fatty hilum: fat in a notch of the node's outline, inside its convex hull slice by slice
    hull = np.stack([convex_hull(sl) for sl in mask])
    notch = hull & ~mask & (signs_hu >= s.fat_hu[0]) & (signs_hu <= s.fat_hu[1])
    notch_fraction = float(notch.sum()) / max(int(hull.sum()), 1)
    hilum = short_axis_mm >= s.fat_notch_min_short_axis_mm and notch_fraction >= s.fat_min_notch_fraction
    # or fat-level density where the node is resolved: its interior, away from the partial-volume rim
    inner_hu = hu[interior & mask]
    inner_soft = inner_hu[inner_hu < s.calcium_hu]
    fatty_density = not calcified and inner_soft.size > 0 and float(inner_soft.mean()) <= s.fat_hu_mean_max
    fat_containing = fat_ml >= s.fat_min_volume_ml or hilum or fatty_density
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


def convex_hull(mask2d: np.ndarray) -> np.ndarray:
    """The pixels of a 2-D mask's convex hull (through its pixel centres); the mask itself when it has no area."""
    j, i = np.nonzero(mask2d)
    if j.size < 3:
        return mask2d.copy()
    try:
        tri = Delaunay(np.stack([j, i], axis=1).astype(float))
    except QhullError:  # all on one line
        return mask2d.copy()
    jj, ii = np.mgrid[j.min(): j.max() + 1, i.min(): i.max() + 1]
    inside = (tri.find_simplex(np.stack([jj.ravel(), ii.ravel()], axis=1)) >= 0).reshape(jj.shape)
    out = mask2d.copy()
    out[j.min(): j.max() + 1, i.min(): i.max() + 1] |= inside
    return out
