"""Quality of an atlas registration: figures measured on the working grid, graded ok | suspect | failed.

The rules (thresholds and their reasons) live in `config/registration.json` under "quality":
one entry per figure with any of `failed_below`, `suspect_below`, `failed_above`,
`suspect_above`, a `message` saying what a breach means, and `missing` (the status when the
figure could not be measured; default "failed"). Figures without a rule are reported only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid

STATUSES = ("ok", "suspect", "failed")


@dataclass
class Grade:
    """A status and the reasons for it."""

    status: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def add(self, status: str, reason: str) -> None:
        """Record a finding; the status only gets worse."""
        if STATUSES.index(status) > STATUSES.index(self.status):
            self.status = status
        if status != "ok":
            self.reasons.append(reason)

    def merge(self, other: "Grade") -> None:
        for r in other.reasons:
            self.reasons.append(r)
        if STATUSES.index(other.status) > STATUSES.index(self.status):
            self.status = other.status


def grade(figures: Mapping[str, float | None], rules: Mapping[str, Mapping[str, Any]], only: set[str] | None = None) -> Grade:
    """Apply the rules to the figures (only the rules named in `only`, if given)."""
    g = Grade()
    for name, rule in rules.items():
        if name.startswith("_") or (only is not None and name not in only) or name not in figures:
            continue
        value = figures[name]
        message = rule.get("message", "")
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            g.add(rule.get("missing", "failed"), f"{name} could not be measured: {message}".rstrip(": "))
            continue
        for status in ("failed", "suspect"):
            lo, hi = rule.get(f"{status}_below"), rule.get(f"{status}_above")
            if lo is not None and value < lo:
                g.add(status, f"{name} = {value:g} is below {lo:g}: {message}".rstrip(": "))
                break
            if hi is not None and value > hi:
                g.add(status, f"{name} = {value:g} is above {hi:g}: {message}".rstrip(": "))
                break
    return g


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Normalised cross-correlation of two images inside a mask (None if the mask is empty or flat)."""
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    if x.size < 100:
        return None
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else None


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice overlap of two masks (None if both are empty)."""
    n = int(a.sum()) + int(b.sum())
    return None if n == 0 else 2.0 * float(np.logical_and(a, b).sum()) / n


def jacobian_determinant(mapping: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """det of the spatial Jacobian of a point mapping ``[k, j, i, 3]`` (LPS mm) on a grid of `spacing` (x, y, z)."""
    sx, sy, sz = spacing
    # d(component)/d(x, y, z): array axes are (k, j, i) = (z, y, x)
    jac = np.empty(mapping.shape[:3] + (3, 3), np.float64)
    for c in range(3):
        gz, gy, gx = np.gradient(mapping[..., c].astype(np.float64), sz, sy, sx)
        jac[..., c, 0], jac[..., c, 1], jac[..., c, 2] = gx, gy, gz
    return np.linalg.det(jac)


def dilate_mm(mask: np.ndarray, spacing: tuple[float, float, float], mm: float) -> np.ndarray:
    """Dilate a mask by about `mm` (ellipsoidal element in voxels)."""
    r = np.array([mm / spacing[2], mm / spacing[1], mm / spacing[0]])
    n = np.maximum(np.ceil(r).astype(int), 0)
    z, y, x = np.ogrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1]
    ball = (z / max(r[0], 0.5)) ** 2 + (y / max(r[1], 0.5)) ** 2 + (x / max(r[2], 0.5)) ** 2 <= 1.0
    return ndimage.binary_dilation(mask, structure=ball)


def order_violations(labels: np.ndarray, grid: Grid, names: Mapping[int, str], above: list[list[str]],
                     right_of: list[list[str]]) -> list[str]:
    """Pairs of stations out of anatomical order (centroids in LPS: +z head, -x patient's right).

    `above`: [a, b] means a's centroid lies higher than b's; `right_of`: a lies on the patient's
    right of b. Pairs with a station absent are skipped.
    """
    labels_of = {n: v for v, n in names.items()}
    index = ndimage.find_objects(labels)
    centroids: dict[str, np.ndarray] = {}
    for name, value in labels_of.items():
        if value - 1 >= len(index) or index[value - 1] is None:
            continue
        box = index[value - 1]
        k, j, i = np.nonzero(labels[box] == value)
        offset = np.array([box[2].start, box[1].start, box[0].start], float)
        centroids[name] = grid.index_to_lps(np.array([i.mean(), j.mean(), k.mean()]) + offset)
    out = []
    for a, b in above:
        if a in centroids and b in centroids and not centroids[a][2] > centroids[b][2]:
            out.append(f"{a} not above {b}")
    for a, b in right_of:
        if a in centroids and b in centroids and not centroids[a][0] < centroids[b][0]:
            out.append(f"{a} not on the right of {b}")
    return out
