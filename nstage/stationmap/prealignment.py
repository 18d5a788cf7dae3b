"""Landmark pre-alignment: a smooth map from patient LPS to atlas LPS before Elastix refines it.

x and y are scaled about the carina by the ratio of the lungs' width and depth. z is mapped
through anchors (lung base, carina, lung apex, each used only where neither CT cuts it):
one scale below the carina and one above (linear beyond the anchors), the change of scale
smoothed over a few centimetres, so that a patient whose upper thorax is shorter or taller than
the atlas's (relative to the lower thorax) still starts close. The carina maps exactly; base and
apex within a few millimetres.
The map is monotone in every axis, hence invertible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid
from nstage.stationmap.thorax_landmarks import ThoraxLandmarks

TABLE_STEP_MM = 1.0


@dataclass(frozen=True)
class PreAlignment:
    """Patient LPS -> atlas LPS, separable: x and y affine, z through a monotone table."""

    centre_patient: np.ndarray  # (3,) carina
    centre_atlas: np.ndarray
    scale_xy: np.ndarray  # (2,)
    z_patient: np.ndarray  # ascending table of patient heights
    z_atlas: np.ndarray  # atlas heights there
    raw_scales: np.ndarray  # x, y and z segment scales before clipping (quality figures)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Atlas LPS points of patient LPS points ``(..., 3)``."""
        p = np.asarray(points, dtype=float)
        out = np.empty_like(p)
        out[..., :2] = self.centre_atlas[:2] + self.scale_xy * (p[..., :2] - self.centre_patient[:2])
        out[..., 2] = _interp_linear_ends(p[..., 2], self.z_patient, self.z_atlas)
        return out

    def atlas_index_on(self, grid: Grid, atlas_grid: Grid) -> np.ndarray:
        """Continuous atlas-grid indices ``[3 (k, j, i), *grid.shape]`` of every voxel of an axis-aligned grid."""
        xs, ys, zs = grid.axis_coordinates()
        pts = np.empty(grid.shape + (3,), float)
        pts[..., 0] = xs[None, None, :]
        pts[..., 1] = ys[None, :, None]
        pts[..., 2] = zs[:, None, None]
        idx = atlas_grid.lps_to_index(self.apply(pts))
        return np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])


def _interp_linear_ends(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp with linear extrapolation by the end slopes."""
    y = np.interp(x, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(x < xp[0], fp[0] + (x - xp[0]) * lo_slope, y)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi_slope, y)


def prealign(patient: ThoraxLandmarks, atlas: ThoraxLandmarks, limits: tuple[float, float], smoothing_mm: float,
             z_range: tuple[float, float]) -> PreAlignment:
    """The pre-alignment from both CTs' landmarks; `z_range` = patient heights the table must cover."""
    if patient.carina is None or atlas.carina is None or patient.lung_lo is None or atlas.lung_lo is None:
        raise ValueError("pre-alignment needs the carina and the lungs in both CTs")
    assert patient.lung_hi is not None and atlas.lung_hi is not None
    ext_p = patient.lung_hi - patient.lung_lo
    ext_a = atlas.lung_hi - atlas.lung_lo
    raw_xy = ext_a[:2] / np.maximum(ext_p[:2], 1.0)
    scale_xy = np.clip(raw_xy, *limits)
    zc_p, zc_a = float(patient.carina[2]), float(atlas.carina[2])
    default = float(np.sqrt(np.prod(scale_xy)))
    raw_below = raw_above = None
    if not (patient.lung_cut_inferior or atlas.lung_cut_inferior) and zc_p - patient.lung_lo[2] > 10.0:
        raw_below = (zc_a - float(atlas.lung_lo[2])) / (zc_p - float(patient.lung_lo[2]))
    if not (patient.lung_cut_superior or atlas.lung_cut_superior) and patient.lung_hi[2] - zc_p > 10.0:
        raw_above = (float(atlas.lung_hi[2]) - zc_a) / (float(patient.lung_hi[2]) - zc_p)
    s_below = float(np.clip(raw_below, *limits)) if raw_below is not None else default
    s_above = float(np.clip(raw_above, *limits)) if raw_above is not None else default
    lo, hi = min(z_range[0], zc_p) - 100.0, max(z_range[1], zc_p) + 100.0
    z = np.arange(lo, hi + TABLE_STEP_MM, TABLE_STEP_MM)
    slope = np.where(z < zc_p, s_below, s_above)
    if smoothing_mm > 0:  # smooth the slope, not the heights: the carina stays exactly on the carina
        slope = ndimage.gaussian_filter1d(slope, smoothing_mm / TABLE_STEP_MM, mode="nearest")
    za = np.concatenate([[0.0], np.cumsum(0.5 * (slope[1:] + slope[:-1]) * TABLE_STEP_MM)])
    za += zc_a - np.interp(zc_p, z, za)
    raw = np.array([*raw_xy, *(v for v in (raw_below, raw_above) if v is not None)])
    return PreAlignment(patient.carina.copy(), atlas.carina.copy(), scale_xy, z, za, raw)
