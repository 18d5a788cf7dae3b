"""Paint the canonical anatomy onto a patient-space voxel grid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from nstage.geometry import Grid
from nstage.synth.anatomy import Anatomy
from nstage.synth.frame import CanonicalFrame
from nstage.synth.shapes import Clipped, Shape, Tube, Union
from nstage.synth.tissues import label

BLOCK_MM = 4.0  # edge of the blocks that coarse-to-fine painting decides at once
LIPSCHITZ = 1.5  # bound on how fast a shape's signed distance changes per mm (frame scale, steep clip surfaces)
MIN_BLOCKED_VOXELS = 100_000  # smaller boxes are evaluated voxel by voxel
MIN_BLOCK_VOXELS = 8  # on coarser grids blocks would save nothing


@dataclass
class Canvas:
    """A grid, the canonical coordinates of its voxels and the tissue labels painted so far."""

    grid: Grid
    frame: CanonicalFrame
    cx: np.ndarray
    cy: np.ndarray
    cz: np.ndarray
    tissue: np.ndarray  # uint8 [k, j, i]

    @classmethod
    def create(cls, grid: Grid, frame: CanonicalFrame) -> "Canvas":
        cx, cy, cz = frame.grid_coordinates(grid)
        shape = grid.shape
        cx, cy, cz = (np.broadcast_to(a, shape) for a in (cx, cy, cz))
        return cls(grid, frame, np.ascontiguousarray(cx), np.ascontiguousarray(cy), np.ascontiguousarray(cz), np.zeros(shape, np.uint8))

    def index_box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Array slices covering the canonical box [lo, hi] (None if outside the grid)."""
        plo, phi = self.frame.patient_box(lo, hi)
        a = self.grid.lps_to_index(plo)
        b = self.grid.lps_to_index(phi)
        i0 = np.floor(np.minimum(a, b)).astype(int) - 1
        i1 = np.ceil(np.maximum(a, b)).astype(int) + 2
        nz, ny, nx = self.grid.shape
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, [nx, ny, nz])
        if np.any(i1 <= i0):
            return None
        return slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0])

    def inside(self, shape: Shape, box: tuple[slice, slice, slice]) -> np.ndarray:
        return self._inside(shape.sdf, box)

    def _inside(self, sdf: "SdfFn", box: tuple[slice, slice, slice]) -> np.ndarray:
        """Voxels of `box` where `sdf` < 0, coarse to fine.

        The distance is first evaluated at one voxel per block of about BLOCK_MM; a block whose
        value is farther from the surface than LIPSCHITZ times the block's diagonal lies wholly
        inside or outside, and only the voxels of the remaining blocks are evaluated one by one.
        """
        cx, cy, cz = self.cx[box], self.cy[box], self.cz[box]
        spacing = np.array(self.grid.spacing[::-1], float)  # (z, y, x)
        block = np.maximum(np.rint(BLOCK_MM / spacing).astype(int), 1)
        if cx.size < MIN_BLOCKED_VOXELS or np.prod(block) < MIN_BLOCK_VOXELS:
            return sdf(cx, cy, cz) < 0
        reach = LIPSCHITZ * float(np.linalg.norm(block * spacing)) / float(np.min(self.frame.scale))
        centres = np.ix_(*(np.minimum(np.arange(-(-n // b)) * b + b // 2, n - 1) for b, n in zip(block, cx.shape)))
        coarse = sdf(cx[centres], cy[centres], cz[centres])

        def full(flags: np.ndarray) -> np.ndarray:
            for axis, b in enumerate(block):
                flags = flags.repeat(b, axis=axis)
            return flags[: cx.shape[0], : cx.shape[1], : cx.shape[2]]

        mask = full(coarse < -reach)
        near = np.nonzero(full(np.abs(coarse) <= reach))
        mask[near] = sdf(cx[near], cy[near], cz[near]) < 0
        return mask

    def paint(self, shape: Shape, tissue: str, over: tuple[str, ...] | None = None) -> None:
        """Set voxels inside `shape` (and, if given, currently of the `over` tissues) to `tissue`."""
        value = label(tissue)
        allowed = None
        if over is not None:
            allowed = np.zeros(256, bool)
            allowed[[label(t) for t in over]] = True
        for sdf, lo, hi in _pieces(shape):
            box = self.index_box(lo, hi)
            if box is None:
                continue
            mask = self._inside(sdf, box)
            if allowed is not None:
                mask &= allowed[self.tissue[box]]
            self.tissue[box][mask] = value

    def mask_of(self, shape: Shape) -> np.ndarray:
        """Boolean mask of `shape` on the whole grid."""
        out = np.zeros(self.grid.shape, bool)
        for sdf, lo, hi in _pieces(shape):
            box = self.index_box(lo, hi)
            if box is not None:
                out[box] |= self._inside(sdf, box)
        return out


SdfFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _pieces(shape: Shape) -> Iterator[tuple[SdfFn, np.ndarray, np.ndarray]]:
    """Split unions, clipped unions and tubes into pieces with tight boxes (same voxels, faster)."""
    if isinstance(shape, Union):
        for p in shape.parts:
            yield from _pieces(p)
    elif isinstance(shape, Clipped):
        keep = shape.keep
        for sdf, lo, hi in _pieces(shape.shape):
            yield (lambda x, y, z, f=sdf: _clip_inside(f(x, y, z), keep, x, y, z)), lo, hi
    elif isinstance(shape, Tube):
        for i, (lo, hi) in enumerate(shape.segment_boxes()):
            yield (lambda x, y, z, i=i: shape.segment_sdf(i, x, y, z)), lo, hi
    else:
        lo, hi = shape.bbox()
        yield shape.sdf, lo, hi


def _clip_inside(d: np.ndarray, keep: SdfFn, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """max(d, keep) where d < 0, d elsewhere: the same sign as the clipped shape's distance, and
    never farther from zero, with `keep` evaluated only where it can matter."""
    inside = d < 0
    if inside.any():
        d = np.array(d, copy=True)
        d[inside] = np.maximum(d[inside], keep(x[inside], y[inside], z[inside]))
    return d


def paint_anatomy(canvas: Canvas, anatomy: Anatomy) -> None:
    """Paint every structure of the anatomy in order, then the CT table under the patient."""
    for s in anatomy.structures:
        canvas.paint(s.shape, s.tissue, s.over)
