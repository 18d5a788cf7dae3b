"""IASLC lymph node station regions derived by rules from the anatomy (clinical-rules.md s.1).

Stations are carved out of mediastinal/hilar fat (never lung, vessels or airways) using the
landmark borders of the IASLC map, evaluated in the canonical anatomy frame. The same code
labels a synthetic patient (truth) and builds the default atlas from the reference anatomy.
Labels are those of `atlas/stations.json`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nstage.stations import by_name
from nstage.synth.anatomy import Anatomy
from nstage.synth.rasterize import Canvas
from nstage.synth.shapes import Tube
from nstage.synth.tissues import label

Rule = Callable[["_Context"], np.ndarray]


class _Context:
    """Canonical coordinates of the candidate voxels and the landmark curves at their heights."""

    def __init__(self, anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.x, self.y, self.z = x, y, z
        self.lm = anatomy.landmarks
        o = anatomy.organs
        self.tx, self.ty = _centre_at(o["trachea"], z)
        self.tr = float(anatomy.params.trachea_radius + 1.6)
        self.ox, self.oy = _centre_at(o["oesophagus"], z)
        self.vessel_front = _front_at(z, [o[n] for n in ("svc", "brachiocephalic_trunk", "left_bcv", "right_bcv", "left_carotid")]
                                      + [_ascending(o["aorta"])], fallback=self.ty - self.tr - 12)
        by_z = _ByZ(z)
        self.hilar_r = _distance_to([o[n] for n in ("rmb", "rul_bronchus", "bronchus_intermedius", "rml_bronchus", "rll_bronchus", "rpa")], x, y, z, by_z)
        self.hilar_l = _distance_to([o[n] for n in ("lmb", "lul_bronchus", "lll_bronchus", "lingula_bronchus", "lpa")], x, y, z, by_z)
        self.left_wall = self.tx + self.tr
        self.ligamentum = self.left_wall + 16.0

    def z_between(self, lo: float, hi: float) -> np.ndarray:
        return (self.z >= lo) & (self.z < hi)


def _centre_at(tube: Tube, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centreline x, y of a mostly vertical tube at heights z (clamped at its ends)."""
    p = tube.points
    order = np.argsort(p[:, 2])
    return np.interp(z, p[order, 2], p[order, 0]), np.interp(z, p[order, 2], p[order, 1])


HILAR_REACH_MM = 16.0  # the rules ask only whether a hilar distance is below this (or less)


class _ByZ:
    """Points in order of height, to find those within a height range at once."""

    def __init__(self, z: np.ndarray) -> None:
        self.order = np.argsort(z, kind="stable")
        self.z = z[self.order]

    def between(self, lo: float, hi: float) -> np.ndarray:
        return self.order[np.searchsorted(self.z, lo, "left"):np.searchsorted(self.z, hi, "right")]


def _distance_to(tubes: list[Tube], x: np.ndarray, y: np.ndarray, z: np.ndarray, by_z: _ByZ | None = None,
                 within: float = HILAR_REACH_MM) -> np.ndarray:
    """Distance from each point to the nearest wall of any of the tubes (0 inside), where it is below
    `within`; elsewhere some value of at least `within`.

    A segment is evaluated only at the points of its box grown by `within` (farther points are
    farther from its wall than that), so every distance below `within` is the same number as the
    minimum over all segments gives."""
    by_z = by_z or _ByZ(z)
    d = np.full(x.shape, np.inf)
    for t in tubes:
        for i, (lo, hi) in enumerate(t.segment_boxes()):
            lo, hi = lo - within - 1e-3, hi + within + 1e-3
            idx = by_z.between(lo[2], hi[2])
            idx = idx[(x[idx] >= lo[0]) & (x[idx] <= hi[0]) & (y[idx] >= lo[1]) & (y[idx] <= hi[1])]
            if idx.size:
                d[idx] = np.minimum(d[idx], t.segment_sdf(i, x[idx], y[idx], z[idx]))
    return np.maximum(d, 0.0)


def _ascending(aorta: Tube) -> Tube:
    keep = aorta.points[:, 1] < -20
    return Tube(aorta.points[keep], aorta.radii[keep])


def _front_at(z: np.ndarray, tubes: list[Tube], fallback: np.ndarray) -> np.ndarray:
    """Most anterior vessel wall (smallest y) at each height, from the tubes crossing that height."""
    zs = np.arange(np.floor(z.min()) - 1, np.ceil(z.max()) + 2, 1.0)
    front = np.full(zs.shape, np.inf)
    for t in tubes:
        for a, b, ra, rb in zip(t.points[:-1], t.points[1:], t.radii[:-1], t.radii[1:]):
            lo, hi = sorted((a[2], b[2]))
            sel = (zs >= lo - max(ra, rb)) & (zs <= hi + max(ra, rb))
            if not sel.any():
                continue
            f = np.clip((zs[sel] - a[2]) / (b[2] - a[2]) if b[2] != a[2] else 0.5, 0, 1)
            front[sel] = np.minimum(front[sel], a[1] + f * (b[1] - a[1]) - (ra + f * (rb - ra)))
    out = np.interp(z, zs, np.where(np.isfinite(front), front, np.nan))
    return np.where(np.isnan(out), fallback, out)


def _rules() -> list[tuple[str, Rule]]:
    """Station rules in priority order (first match wins)."""
    return [
        ("1R", lambda c: (c.z >= c.lm.z_notch) & (np.hypot(c.x - c.tx, c.y - c.ty) < 55) & (c.x < c.tx)),
        ("1L", lambda c: (c.z >= c.lm.z_notch) & (np.hypot(c.x - c.tx, c.y - c.ty) < 55) & (c.x >= c.tx)),
        ("7", lambda c: c.z_between(c.lm.z_subcarinal_low, c.lm.z_carina) & (np.abs(c.x - c.tx) < 24) & (c.y > c.ty - 14) & (c.y < c.oy + 4)),
        ("3P", lambda c: c.z_between(c.lm.z_carina, c.lm.z_notch) & (c.y > c.ty + 0.5 * c.tr) & (np.abs(c.x - c.tx) < 22) & (c.y < c.oy + 14)),
        ("2R", lambda c: c.z_between(c.lm.z_bcv, c.lm.z_notch) & (c.x < c.left_wall) & (c.x > c.tx - 45) & (c.y >= c.vessel_front)),
        ("2L", lambda c: c.z_between(c.lm.z_arch_top, c.lm.z_notch) & (c.x >= c.left_wall) & (c.x < c.tx + 45) & (c.y >= c.vessel_front)),
        ("4R", lambda c: c.z_between(c.lm.z_azygos_low, c.lm.z_bcv) & (c.x < c.left_wall) & (c.x > c.tx - 45) & (c.y >= c.vessel_front - 4)),
        ("4L", lambda c: c.z_between(c.lm.z_lpa_top, c.lm.z_arch_top) & (c.x >= c.left_wall) & (c.x < c.ligamentum) & (c.y > c.ty - 22)),
        ("5", lambda c: c.z_between(c.lm.z_lpa_top - 6, c.lm.z_arch_bottom + 8) & (c.x >= c.ligamentum) & (c.x < 62) & (c.y > -32) & (c.y < 26)),
        ("6", lambda c: c.z_between(c.lm.z_lpa_top - 10, c.lm.z_arch_top + 5) & (c.x > 10) & (c.y < -24)),
        ("3A", lambda c: c.z_between(c.lm.z_carina - 20, c.lm.z_notch) & (c.y < c.vessel_front)),
        ("10R", lambda c: c.z_between(c.lm.z_subcarinal_low - 5, c.lm.z_azygos_low) & (c.x < c.tx - c.tr - 3) & (c.x > -42) & (c.hilar_r < 16)),
        ("10L", lambda c: c.z_between(c.lm.z_subcarinal_low - 10, c.lm.z_lpa_top) & (c.x > c.tx + c.tr + 3) & (c.x < 48) & (c.hilar_l < 16)),
        ("11R", lambda c: c.z_between(-80, 10) & (c.x <= -42) & (c.hilar_r < 14)),
        ("11L", lambda c: c.z_between(-85, 5) & (c.x >= 48) & (c.hilar_l < 14)),
        ("8", lambda c: c.z_between(c.lm.z_diaphragm, c.lm.z_subcarinal_low) & (np.hypot(c.x - c.ox, c.y - c.oy) < 22)),
        ("9", lambda c: c.z_between(c.lm.z_diaphragm, c.lm.z_ipv) & (np.hypot(c.x - c.ox, c.y - c.oy) < 48) & (c.y > c.oy - 12)),
    ]


def candidate_tissues() -> tuple[int, ...]:
    """Tissue labels a station may occupy (mediastinal/hilar fat and what is painted over it)."""
    return tuple(label(n) for n in ("mediastinal_fat", "lymph_node", "calcification"))


def build_stations(canvas: Canvas, anatomy: Anatomy) -> np.ndarray:
    """Station label map (uint8, labels of stations.json) on the canvas grid."""
    cand = np.isin(canvas.tissue, candidate_tissues())
    idx = np.flatnonzero(cand)
    out = np.zeros(canvas.grid.shape, np.uint8)
    if idx.size == 0:
        return out
    ctx = _Context(anatomy, canvas.cx.ravel()[idx].astype(float), canvas.cy.ravel()[idx].astype(float), canvas.cz.ravel()[idx].astype(float))
    assigned = np.zeros(idx.size, np.uint8)
    table = by_name()
    for name, rule in _rules():
        hit = (assigned == 0) & rule(ctx)
        assigned[hit] = table[name].label
    out.ravel()[idx] = assigned
    return out
