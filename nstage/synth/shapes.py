"""Signed-distance primitives for the parametric anatomy.

Every shape lives in the canonical anatomy frame (millimetres, LPS axes, origin at the carina on
the tracheal axis) and answers two questions: its bounding box, and an approximate signed
distance (negative inside) at given canonical coordinates. Shapes can be inflated by a margin,
which is how envelopes (mediastinum, hilar sleeves, fat around vessels) are derived from organs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

Box = tuple[np.ndarray, np.ndarray]


class Shape(Protocol):
    """A solid in canonical space."""

    def bbox(self) -> Box: ...

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray: ...

    def inflated(self, margin: float) -> "Shape": ...


def smooth_polyline(points: np.ndarray, step: float = 4.0) -> np.ndarray:
    """Resample control points into a smooth centripetal Catmull-Rom curve with ~`step` mm pieces."""
    p = np.asarray(points, dtype=float)
    if len(p) < 3:
        n = max(2, int(np.ceil(np.linalg.norm(p[-1] - p[0]) / step)) + 1)
        return p[0] + (p[-1] - p[0]) * np.linspace(0, 1, n)[:, None]
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[0]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        seg = 0.5 * (
            2 * p1
            + (-p0 + p2) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.extend(seg)
    return np.asarray(out)


@dataclass(frozen=True)
class Tube:
    """A tube along a polyline whose radius varies linearly along each piece (round caps)."""

    points: np.ndarray
    radii: np.ndarray

    @classmethod
    def through(cls, control: list[tuple[float, float, float]] | np.ndarray, radius: float | list[float], step: float = 4.0) -> "Tube":
        """A smooth tube through control points; `radius` is one value or one per control point."""
        control = np.asarray(control, dtype=float)
        pts = smooth_polyline(control, step)
        r_ctrl = np.broadcast_to(np.asarray(radius, dtype=float), (len(control),))
        # radius interpolated by arc length between control points
        s_ctrl = _arc_positions(control, pts)
        s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        return cls(points=pts, radii=np.interp(s_pts, s_ctrl, r_ctrl))

    def bbox(self) -> Box:
        r = float(self.radii.max())
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r

    def segment_boxes(self) -> list[Box]:
        boxes = []
        for a, b, ra, rb in zip(self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]):
            r = max(ra, rb)
            boxes.append((np.minimum(a, b) - r, np.maximum(a, b) + r))
        return boxes

    def segment_sdf(self, i: int, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        a, b = self.points[i], self.points[i + 1]
        ra, rb = self.radii[i], self.radii[i + 1]
        ab = b - a
        L2 = float(ab @ ab) or 1e-9
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / L2, 0.0, 1.0)
        dx, dy, dz = x - (a[0] + t * ab[0]), y - (a[1] + t * ab[1]), z - (a[2] + t * ab[2])
        return np.sqrt(dx * dx + dy * dy + dz * dz) - (ra + t * (rb - ra))

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = np.full(np.shape(x), np.inf, dtype=np.float32)
        for i in range(len(self.points) - 1):
            d = np.minimum(d, self.segment_sdf(i, x, y, z))
        return d

    def inflated(self, margin: float) -> "Tube":
        return Tube(self.points, self.radii + margin)

    def point_at_z(self, z: float) -> np.ndarray | None:
        """Centre point where the centreline first crosses height z (None if it never does)."""
        p = self.points
        for a, b in zip(p[:-1], p[1:]):
            if (a[2] - z) * (b[2] - z) <= 0 and a[2] != b[2]:
                t = (z - a[2]) / (b[2] - a[2])
                return a + t * (b - a)
        return None


def _arc_positions(control: np.ndarray, pts: np.ndarray) -> np.ndarray:
    s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    idx = [int(np.argmin(np.linalg.norm(pts - c, axis=1))) for c in control]
    s = s_pts[idx].astype(float)
    return np.maximum.accumulate(s + np.arange(len(s)) * 1e-6)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid with semi-axes along the columns of `rotation` (identity: x, y, z)."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre", np.asarray(self.centre, float))
        object.__setattr__(self, "semi_axes", np.asarray(self.semi_axes, float))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, float))

    def bbox(self) -> Box:
        ext = np.sqrt(((self.rotation * self.semi_axes[None, :]) ** 2).sum(axis=1))
        return self.centre - ext, self.centre + ext

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        c, R, a = self.centre, self.rotation, self.semi_axes
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        u = (dx * R[0, 0] + dy * R[1, 0] + dz * R[2, 0]) / a[0]
        v = (dx * R[0, 1] + dy * R[1, 1] + dz * R[2, 1]) / a[1]
        w = (dx * R[0, 2] + dy * R[1, 2] + dz * R[2, 2]) / a[2]
        return ((np.sqrt(u * u + v * v + w * w) - 1.0) * a.min()).astype(np.float32)

    def inflated(self, margin: float) -> "Ellipsoid":
        return Ellipsoid(self.centre, np.maximum(self.semi_axes + margin, 0.5), self.rotation)


@dataclass(frozen=True)
class RoundedBox:
    """An axis-aligned box with rounded edges."""

    centre: np.ndarray
    half_size: np.ndarray
    rounding: float = 2.0

    def bbox(self) -> Box:
        c, h = np.asarray(self.centre, float), np.asarray(self.half_size, float)
        return c - h - self.rounding, c + h + self.rounding

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        c, h = np.asarray(self.centre, float), np.asarray(self.half_size, float)
        qx, qy, qz = np.abs(x - c[0]) - h[0], np.abs(y - c[1]) - h[1], np.abs(z - c[2]) - h[2]
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
        inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)
        return (outside + inside - self.rounding).astype(np.float32)

    def inflated(self, margin: float) -> "RoundedBox":
        return RoundedBox(self.centre, self.half_size, self.rounding + margin)


@dataclass(frozen=True)
class Profile:
    """A z-dependent superellipse cross-section: the body outline and the thoracic cavity.

    `half_width(z)`, `half_depth(z)` and `centre_y(z)` are tabulated on `z_table`.
    """

    z_table: np.ndarray
    half_width: np.ndarray
    half_depth: np.ndarray
    centre_y: np.ndarray
    exponent: float = 2.4
    margin: float = 0.0

    def bbox(self) -> Box:
        a = self.half_width.max() + self.margin
        lo = np.array([-a, (self.centre_y - self.half_depth).min() - self.margin, self.z_table[0]])
        hi = np.array([a, (self.centre_y + self.half_depth).max() + self.margin, self.z_table[-1]])
        return lo, hi

    def at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.interp(z, self.z_table, self.half_width) + self.margin,
            np.interp(z, self.z_table, self.half_depth) + self.margin,
            np.interp(z, self.z_table, self.centre_y),
        )

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        a, b, yc = self.at(z)
        n = self.exponent
        r = (np.abs(x / a) ** n + np.abs((y - yc) / b) ** n) ** (1.0 / n)
        d = (r - 1.0) * np.minimum(a, b)
        out_of_z = np.maximum(self.z_table[0] - z, z - self.z_table[-1])
        return np.maximum(d, out_of_z).astype(np.float32)

    def inflated(self, margin: float) -> "Profile":
        return Profile(self.z_table, self.half_width, self.half_depth, self.centre_y, self.exponent, self.margin + margin)


@dataclass(frozen=True)
class Clipped:
    """A shape kept only where `keep(x, y, z) <= 0` (a signed half-region, e.g. below the diaphragm)."""

    shape: Shape
    keep: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

    def bbox(self) -> Box:
        return self.shape.bbox()

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(self.shape.sdf(x, y, z), self.keep(x, y, z)).astype(np.float32)

    def inflated(self, margin: float) -> "Clipped":
        return Clipped(self.shape.inflated(margin), self.keep)


@dataclass(frozen=True)
class Rind:
    """The outer `thickness` mm of a shape: Clipped(shape, -shape.sdf - thickness), the same numbers,
    with the shape's distance worked out once (the painter also reuses it from the shape itself)."""

    shape: Shape
    thickness: float

    def bbox(self) -> Box:
        return self.shape.bbox()

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = self.shape.sdf(x, y, z)
        return np.maximum(d, -d - self.thickness).astype(np.float32)

    def inflated(self, margin: float) -> "Clipped":
        shape, t = self.shape, self.thickness  # as Clipped.inflated: the clip stays that of the shape itself
        return Clipped(shape.inflated(margin), lambda x, y, z: -shape.sdf(x, y, z) - t)


@dataclass(frozen=True)
class Union:
    """Several shapes as one."""

    parts: tuple

    def bbox(self) -> Box:
        boxes = [p.bbox() for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = self.parts[0].sdf(x, y, z)
        for p in self.parts[1:]:
            d = np.minimum(d, p.sdf(x, y, z))
        return d

    def inflated(self, margin: float) -> "Union":
        return Union(tuple(p.inflated(margin) for p in self.parts))


def rotation_towards(axis: np.ndarray) -> np.ndarray:
    """A rotation whose first column is the unit vector `axis` (others orthonormal)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    return np.stack([a, b, c], axis=1)
