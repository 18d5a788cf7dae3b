"""Landmarks of a chest CT found by thresholding: body, lungs, trachea and carina, and orientation cues.

Works on an axis-aligned LPS grid (``[k, j, i]`` = z, y, x with k towards the head), such as the
working-resolution copy the registration makes. Thresholds come from `config/registration.json`
("landmarks"). The same code runs on the patient and on every atlas CT, so that their landmarks
agree by construction.

Orientation cues, all measured relative to the carina:
- heart_offset_mm: x of the soft tissue between the lungs, below and in front of the carina (the
  heart lies to the patient's left, +x);
- spine_offset_mm: y of the bone near the midline at carina level (the spine is posterior, +y);
- the trachea itself: it is searched from the head end down, so an image upside down has none,
  or a false one low in the lungs (carina_height) or off the midline (carina_offset_mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid, mask_box


@dataclass(frozen=True)
class LandmarkSettings:
    """Thresholds of the landmark finder (HU, mm, mm^2, ml)."""

    air_hu: float
    trachea_air_hu: float
    body_hu: float
    table_opening_mm: float
    lung_min_component_ml: float
    lung_min_slice_area_mm2: float
    lung_component_fraction: float
    trachea_area_mm2: tuple[float, float]
    trachea_max_offset_mm: float
    trachea_min_length_mm: float
    trachea_merge_factor: float
    trachea_max_merge_mm: float
    bone_hu: float
    soft_tissue_hu: float
    heart_window_mm: tuple[float, float]
    spine_window_mm: float
    midline_halfwidth_mm: float

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> "LandmarkSettings":
        """From the "landmarks" object of config/registration.json (pairs given as 2-lists)."""
        values = {}
        for name, kind in cls.__annotations__.items():
            v = c[name]
            values[name] = (float(v[0]), float(v[1])) if "tuple" in str(kind) else float(v)
        return cls(**values)


@dataclass(frozen=True)
class ThoraxLandmarks:
    """What the finder saw; None where a landmark was not found."""

    grid: Grid
    body: np.ndarray  # bool, the patient (slices with holes filled), table excluded
    lungs: np.ndarray  # bool, lungs and bronchi (trachea above the carina excluded)
    trachea: np.ndarray  # bool, the traced trachea (above the carina)
    lung_volume_ml: float
    lung_lo: np.ndarray | None  # (3,) LPS corner of the lungs' bounding box (slices with some lung area)
    lung_hi: np.ndarray | None
    lung_cut_inferior: bool  # lungs touch the lowest slice (cut by the field of view)
    lung_cut_superior: bool
    carina: np.ndarray | None  # (3,) LPS
    trachea_top_z: float | None  # LPS z of the highest traced trachea slice
    trachea_length_mm: float
    heart_offset_mm: float | None
    spine_offset_mm: float | None

    @property
    def carina_height(self) -> float | None:
        """Height of the carina above the lungs' lowest point, as a fraction of the lungs' height."""
        if self.carina is None or self.lung_lo is None or self.lung_hi is None or self.lung_hi[2] <= self.lung_lo[2]:
            return None
        return float((self.carina[2] - self.lung_lo[2]) / (self.lung_hi[2] - self.lung_lo[2]))

    @property
    def trachea_top_height(self) -> float | None:
        """Height of the trachea's top above the lungs' lowest point, as a fraction of the lungs' height.

        The trachea enters the chest from the neck, above the lung apices (1 or more; also when the
        field of view cuts the apices). A 'trachea' that begins low in the lungs is something else.
        """
        if self.trachea_top_z is None or self.lung_lo is None or self.lung_hi is None or self.lung_hi[2] <= self.lung_lo[2]:
            return None
        return float((self.trachea_top_z - self.lung_lo[2]) / (self.lung_hi[2] - self.lung_lo[2]))

    @property
    def carina_offset_mm(self) -> float | None:
        """Distance (x) of the carina from the middle of the lungs: the trachea runs in the midline."""
        if self.carina is None or self.lung_lo is None or self.lung_hi is None:
            return None
        return float(abs(self.carina[0] - 0.5 * (self.lung_lo[0] + self.lung_hi[0])))

    def figures(self) -> dict[str, float | None]:
        """The numbers that go into the quality report."""
        return {
            "lung_volume_ml": round(self.lung_volume_ml, 1),
            "trachea_length_mm": round(self.trachea_length_mm, 1),
            "carina_height": _r(self.carina_height, 3),
            "trachea_top_height": _r(self.trachea_top_height, 3),
            "carina_offset_mm": _r(self.carina_offset_mm),
            "heart_offset_mm": _r(self.heart_offset_mm),
            "spine_offset_mm": _r(self.spine_offset_mm),
        }


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def find_landmarks(hu: np.ndarray, grid: Grid, s: LandmarkSettings) -> ThoraxLandmarks:
    """Body, lungs, carina and orientation cues of a CT on an axis-aligned grid."""
    if not np.allclose(grid.direction, np.eye(3)):
        raise ValueError("find_landmarks needs an axis-aligned grid")
    sx, sy, sz = grid.spacing
    body = body_mask(hu, grid, s)
    air = (hu < s.air_hu) & body
    trachea, carina, length = trace_trachea((hu < s.trachea_air_hu) & body, body, grid, s)
    lungs = lung_mask(air & ~ndimage.binary_dilation(trachea, structure=_disk_2d()), grid, s)
    voxel_ml = grid.voxel_volume_ml
    volume = float(lungs.sum()) * voxel_ml
    lo = hi = None
    cut_inf = cut_sup = False
    per_slice = lungs.sum(axis=(1, 2)) * sx * sy
    rows = np.flatnonzero(per_slice >= s.lung_min_slice_area_mm2)  # ignore thin wisps at the ends
    if rows.size:
        k, j, i = np.nonzero(lungs[rows.min():rows.max() + 1])
        lo = grid.index_to_lps(np.array([i.min(), j.min(), rows.min()]))
        hi = grid.index_to_lps(np.array([i.max(), j.max(), rows.max()]))
        cut_inf = bool(per_slice[0] >= s.lung_min_slice_area_mm2)
        cut_sup = bool(per_slice[-1] >= s.lung_min_slice_area_mm2)
    heart = spine = top = None
    if trachea.any():
        top = float(grid.index_to_lps(np.array([0.0, 0.0, float(np.flatnonzero(trachea.any(axis=(1, 2))).max())]))[2])
    if carina is not None:
        heart = _heart_offset(hu, lungs, body, grid, carina, s)
        spine = _spine_offset(hu, body, grid, carina, s)
    return ThoraxLandmarks(grid, body, lungs, trachea, volume, lo, hi, cut_inf, cut_sup, carina, top, length, heart, spine)


def thorax_mask(lm: ThoraxLandmarks, margin_mm: float, neck_radius_mm: float) -> np.ndarray:
    """Where the registration should look: the lungs' slice hulls grown by `margin_mm`, plus the
    neck around the trachea above the lungs (station 1), inside the body.

    Leaves out arms, shoulders, breasts and the fat of the body wall, which differ between
    people far more than the thorax does.
    """
    hull = np.zeros_like(lm.lungs)
    for k in np.flatnonzero(lm.lungs.any(axis=(1, 2))):
        hull[k] = _row_hull(lm.lungs[k]) | _row_hull(lm.lungs[k].T).T
    inside = within_mm(hull, lm.grid, margin_mm)
    if lm.trachea_top_z is not None and lm.lung_hi is not None:
        _, _, zs = lm.grid.axis_coordinates()
        neck = np.zeros_like(hull)
        for k in np.flatnonzero((zs > lm.lung_hi[2] - margin_mm) & lm.trachea.any(axis=(1, 2))):
            neck[k] = lm.trachea[k]
        inside |= within_mm(neck, lm.grid, neck_radius_mm)
    return inside & lm.body


def within_mm(seeds: np.ndarray, grid: Grid, radius_mm: float) -> np.ndarray:
    """The voxels within `radius_mm` of any seed voxel (Euclidean, in mm).

    The distance is computed in the seeds' box grown by the radius only: every seed lies in it, so distances there
    are exact, and no voxel beyond it is that close. The same mask as a transform of the whole grid, 3-4x faster."""
    out = np.zeros(seeds.shape, bool)
    spacing = grid.spacing[::-1]
    box = mask_box(seeds, [int(np.ceil(radius_mm / sp)) + 1 for sp in spacing])
    if box is None:
        return out
    out[box] = ndimage.distance_transform_edt(~seeds[box], sampling=spacing) <= radius_mm
    return out


def _disk_2d() -> np.ndarray:
    """3x3 in-plane neighbourhood, one slice thick."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = True
    return st


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    """Ellipsoidal structuring element with semi-axes (rz, ry, rx) in voxels."""
    r = np.maximum(np.asarray(radius_vox, float), 0.5)
    n = np.ceil(r).astype(int)
    z, y, x = np.ogrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1]
    return (z / r[0]) ** 2 + (y / r[1]) ** 2 + (x / r[2]) ** 2 <= 1.0


def body_mask(hu: np.ndarray, grid: Grid, s: LandmarkSettings) -> np.ndarray:
    """The patient: largest tissue component after an opening that detaches the table; slices filled."""
    tissue = hu > s.body_hu
    sx, sy, sz = grid.spacing
    r = np.array([0.0, s.table_opening_mm / sy, s.table_opening_mm / sx])
    ball = _ball(r)
    opened = ndimage.binary_opening(tissue, structure=ball)
    lab, n = ndimage.label(opened)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = ndimage.sum_labels(np.ones(hu.shape, np.int32), lab, index=np.arange(1, n + 1))
    core = lab == (int(np.argmax(sizes)) + 1)
    body = tissue & ndimage.binary_dilation(core, structure=ball)
    for k in range(body.shape[0]):
        if body[k].any():
            body[k] = ndimage.binary_fill_holes(body[k])
    return body


def lung_mask(internal_air: np.ndarray, grid: Grid, s: LandmarkSettings) -> np.ndarray:
    """The large air-filled components inside the body: both lungs (and their bronchi)."""
    lab, n = ndimage.label(internal_air)
    if n == 0:
        return np.zeros(internal_air.shape, bool)
    sizes = ndimage.sum_labels(np.ones(lab.shape, np.int32), lab, index=np.arange(1, n + 1)) * grid.voxel_volume_ml
    keep = np.flatnonzero((sizes >= s.lung_min_component_ml) & (sizes >= s.lung_component_fraction * sizes.max())) + 1
    return np.isin(lab, keep)


def trace_trachea(air: np.ndarray, body: np.ndarray, grid: Grid, s: LandmarkSettings) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Follow the trachea down from the top slice to its bifurcation.

    Returns the trachea voxels (above the carina), the carina (LPS, or None; its x is the
    trachea's mean x, the midline) and the traced length.
    The trachea starts as a round air region near the middle of the body, of tracheal size; it is
    followed slice by slice while one air region of similar size overlaps it. The carina is where
    it splits in two, or where it merges for good into a much larger air region (the lungs).
    """
    sz = grid.spacing[2]
    k = air.shape[0] - 1
    while k >= 0:
        start = _trachea_candidate(air[k], body[k], grid, s)
        if start is None:
            k -= 1
            continue
        track, carina_k = _follow(air, k, start, grid, s)
        if carina_k is not None:
            track = [t for t in track if t[0] > carina_k]
        length = len(track) * sz
        if carina_k is not None and length >= s.trachea_min_length_mm:
            mask = np.zeros(air.shape, bool)
            for kk, fp in track:
                mask[kk] = fp
            j, i = np.nonzero(track[-1][1])
            carina = grid.index_to_lps(np.array([i.mean(), j.mean(), carina_k + 0.5]))  # between the last single slice and the split
            _, _, ti = np.nonzero(mask)
            carina[0] = grid.index_to_lps(np.array([ti.mean(), 0.0, 0.0]))[0]  # midline: the trachea's mean x
            return mask, carina, float(length)
        k -= max(1, len(track))
    return np.zeros(air.shape, bool), None, 0.0


def _trachea_candidate(air2d: np.ndarray, body2d: np.ndarray, grid: Grid, s: LandmarkSettings) -> np.ndarray | None:
    """The air region of one slice that looks like the trachea, or None."""
    if not body2d.any() or not air2d.any():
        return None
    sx, sy, _ = grid.spacing
    lab, n = ndimage.label(air2d)
    areas = ndimage.sum_labels(np.ones(lab.shape, np.int32), lab, index=np.arange(1, n + 1)) * sx * sy
    jb, ib = np.nonzero(body2d)
    cx, cy = ib.mean(), jb.mean()
    best, best_d = None, np.inf
    for idx in np.flatnonzero((areas >= s.trachea_area_mm2[0]) & (areas <= s.trachea_area_mm2[1])) + 1:
        j, i = np.nonzero(lab == idx)
        w, h = (i.max() - i.min() + 1) * sx, (j.max() - j.min() + 1) * sy
        if max(w, h) > 2.2 * min(w, h):  # not round
            continue
        d = abs(i.mean() - cx) * sx
        if d <= s.trachea_max_offset_mm and (j.mean() - cy) * sy < 0.15 * (jb.max() - jb.min()) * sy and d < best_d:
            best, best_d = lab == idx, d
    return best


def _follow(air: np.ndarray, k0: int, start: np.ndarray, grid: Grid, s: LandmarkSettings) -> tuple[list[tuple[int, np.ndarray]], int | None]:
    """Slices of the tracked trachea from k0 downwards, and the slice of the carina (None if lost).

    Where the trachea touches a lung in a slice (one much larger air region), the part of that
    region over the last clean footprint is followed; if that lasts longer than
    `trachea_max_merge_mm`, the carina is put where the merge began.
    """
    track = [(k0, start)]
    ref = float(start.sum())
    fp = start
    merged_since: int | None = None
    for k in range(k0 - 1, -1, -1):
        grown = ndimage.binary_dilation(fp)  # fp: the last footprint clear of the lungs
        lab, n = ndimage.label(air[k])
        hits = np.unique(lab[grown & (lab > 0)])
        sizes = [(h, float((lab == h).sum()), float(((lab == h) & grown).sum())) for h in hits]
        big = [(h, a, o) for h, a, o in sizes if min(a, o) >= 0.15 * ref]
        if not big:
            return (track, merged_since) if merged_since is not None else (track, None)
        if len(big) >= 2:
            return track, merged_since if merged_since is not None else k  # bifurcation
        h, area, _ = big[0]
        if area > s.trachea_merge_factor * ref:  # touches a lung (or the bronchi enter the lungs)
            merged_since = k if merged_since is None else merged_since
            if (merged_since - k + 1) * grid.spacing[2] > s.trachea_max_merge_mm:
                return track, merged_since
            track.append((k, (lab == h) & grown))
            continue
        merged_since = None
        fp = lab == h
        track.append((k, fp))
        ref = float(np.median([t[1].sum() for t in track]))
    return track, None


def _heart_offset(hu: np.ndarray, lungs: np.ndarray, body: np.ndarray, grid: Grid, carina: np.ndarray, s: LandmarkSettings) -> float | None:
    """x of the soft tissue between the lungs, below and in front of the carina, minus the carina's x (mm)."""
    xs, ys, zs = grid.axis_coordinates()
    ks = np.flatnonzero((zs >= carina[2] + s.heart_window_mm[0]) & (zs <= carina[2] + s.heart_window_mm[1]))
    total = 0.0
    weighted = 0.0
    anterior = (ys < carina[1])[:, None]  # the heart lies in front of the carina, the spine behind
    for k in ks:
        hull = _row_hull(lungs[k]) & anterior
        soft = hull & ~lungs[k] & body[k] & (hu[k] > s.soft_tissue_hu) & (hu[k] < s.bone_hu)
        j, i = np.nonzero(soft)
        total += i.size
        weighted += float(xs[i].sum())
    if total < 50:
        return None
    return weighted / total - float(carina[0])


def _row_hull(lung2d: np.ndarray) -> np.ndarray:
    """Per row, everything between the leftmost and the rightmost lung voxel."""
    out = np.zeros_like(lung2d)
    rows = np.flatnonzero(lung2d.any(axis=1))
    for j in rows:
        i = np.flatnonzero(lung2d[j])
        out[j, i.min():i.max() + 1] = True
    return out


def _spine_offset(hu: np.ndarray, body: np.ndarray, grid: Grid, carina: np.ndarray, s: LandmarkSettings) -> float | None:
    """Median y of the bone near the midline around carina height, minus the carina's y (mm)."""
    xs, ys, zs = grid.axis_coordinates()
    kz = np.abs(zs - carina[2]) <= s.spine_window_mm
    ix = np.abs(xs - carina[0]) <= s.midline_halfwidth_mm
    sub = (hu[kz][:, :, ix] > s.bone_hu) & body[kz][:, :, ix]
    _, j, _ = np.nonzero(sub)
    if j.size < 20:
        return None
    return float(np.median(ys[j])) - float(carina[1])
