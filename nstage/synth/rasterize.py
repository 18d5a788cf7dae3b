"""Paint the canonical anatomy onto a patient-space voxel grid.

A shape is painted piece by piece (the parts of unions, the segments of tubes, each with its own
canonical box); a voxel is inside the shape iff it is inside some piece. How a piece decides its
voxels is fixed (see Canvas._inside); what is left to choose, and chosen for speed, is which
voxels are looked at: only those whose canonical coordinates can lie in the piece's box, and not
those that another piece of the shape already holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from nstage.geometry import Grid
from nstage.synth.anatomy import Anatomy
from nstage.synth.frame import CanonicalFrame
from nstage.synth.shapes import Clipped, Profile, Rind, Shape, Tube, Union
from nstage.synth.tissues import label

BLOCK_MM = 4.0  # edge of the blocks that coarse-to-fine painting decides at once
LIPSCHITZ = 1.5  # bound on how fast a shape's signed distance changes per mm (frame scale, steep clip surfaces)
MIN_BLOCKED_VOXELS = 100_000  # smaller boxes are evaluated voxel by voxel
MIN_BLOCK_VOXELS = 8  # on coarser grids blocks would save nothing
BOX_SLACK_MM = 1e-3  # canonical margin of the sub-box test (rounding is below 1e-9 mm)
TILE = 8  # voxels: the sub-box test reads coordinate ranges over tiles of TILE x TILE
SKIP_MIN_VOXELS = 4096  # in sub-boxes this large, voxels that other pieces hold are not evaluated again ...
SKIP_MIN_FRACTION = 0.25  # ... once they are this share of the sub-box
RUN_MAX_SEGMENTS = 16  # tube segments evaluated together over one sub-box ...
RUN_MAX_GROWTH = 2.0  # ... while segments x its voxels stays within this many times their own boxes' voxels
RUN_MAX_PAIRS = 1 << 21  # ... and segments x voxels stays below this

SdfFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Range = tuple[int, int]  # [start, stop) along one array axis
Box3 = tuple[Range, Range, Range]  # (k, j, i)


@dataclass
class Canvas:
    """A grid, the canonical coordinates of its voxels and the tissue labels painted so far."""

    grid: Grid
    frame: CanonicalFrame
    cx: np.ndarray
    cy: np.ndarray
    cz: np.ndarray
    tissue: np.ndarray  # uint8 [k, j, i]
    _xyz: np.ndarray | None = field(default=None, init=False, repr=False)  # (3, k, j, i): cx, cy, cz
    _tiles: tuple | None = field(default=None, init=False, repr=False)
    _memo: dict | None = field(default=None, init=False, repr=False)  # id(shape) -> (shape, values, known): see remember

    @classmethod
    def create(cls, grid: Grid, frame: CanonicalFrame) -> Canvas:
        xyz = frame.grid_coordinates_stacked(grid)
        canvas = cls(grid, frame, xyz[0], xyz[1], xyz[2], np.zeros(grid.shape, np.uint8))
        canvas._xyz = xyz
        return canvas

    @property
    def xyz(self) -> np.ndarray:
        if self._xyz is None:
            self._xyz = np.stack([self.cx, self.cy, self.cz])
        return self._xyz

    def index_box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Array slices covering the canonical box [lo, hi] (None if outside the grid)."""
        box = self._index_boxes(np.asarray(lo, float)[None], np.asarray(hi, float)[None])[0]
        return None if box is None else _slices(box)

    def _index_boxes(self, lo: np.ndarray, hi: np.ndarray) -> list[Box3 | None]:
        """index_box for (n, 3) canonical boxes at once (the same ranges, box for box)."""
        plo, phi = self.frame.patient_box(lo, hi)
        a, b = self._lps_to_index(plo), self._lps_to_index(phi)
        i0 = np.floor(np.minimum(a, b)).astype(int) - 1
        i1 = np.ceil(np.maximum(a, b)).astype(int) + 2
        nz, ny, nx = self.grid.shape
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, [nx, ny, nz])
        valid = np.all(i1 > i0, axis=1)
        return [((s[2], e[2]), (s[1], e[1]), (s[0], e[0])) if v else None for s, e, v in zip(i0.tolist(), i1.tolist(), valid.tolist())]

    def _lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Grid.lps_to_index row by row; one product per coordinate when the matrix is diagonal (then the same numbers)."""
        m = self.grid._to_index
        d = np.diag(m)
        if np.count_nonzero(m - np.diag(d)) == 0:
            return (points - np.asarray(self.grid.origin)) * d
        return np.array([self.grid.lps_to_index(p) for p in points]).reshape(-1, 3)

    def paint(self, shape: Shape, tissue: str, over: tuple[str, ...] | None = None) -> None:
        """Set voxels inside `shape` (and, if given, currently of the `over` tissues) to `tissue`."""
        found = self._union(shape)
        if found is None:
            return
        box, mask = found
        target = self.tissue[_slices(box)]
        if over is not None:
            allowed = np.zeros(256, bool)
            allowed[[label(t) for t in over]] = True
            mask &= allowed[target]
        target[mask] = label(tissue)

    def mask_of(self, shape: Shape) -> np.ndarray:
        """Boolean mask of `shape` on the whole grid."""
        out = np.zeros(self.grid.shape, bool)
        found = self._union(shape)
        if found is not None:
            out[_slices(found[0])] = found[1]
        return out

    def box_mask(self, shape: Shape) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """`shape`'s mask within a box of the grid that holds it: (array slices, mask), None if empty."""
        found = self._union(shape)
        return None if found is None else (_slices(found[0]), found[1])

    def mask_in(self, shape: Shape, box: tuple[slice, slice, slice]) -> np.ndarray:
        """Boolean mask of `shape` on the array slices `box` (mask_of(shape)[box], without the whole grid)."""
        out = np.zeros(tuple(b.stop - b.start for b in box), bool)
        found = self._union(shape)
        if found is not None:
            lo = [max(a, b.start) for (a, _), b in zip(found[0], box)]
            hi = [min(e, b.stop) for (_, e), b in zip(found[0], box)]
            if all(h > l for l, h in zip(lo, hi)):
                src = tuple(slice(l - a, h - a) for l, h, (a, _) in zip(lo, hi, found[0]))
                dst = tuple(slice(l - b.start, h - b.start) for l, h, b in zip(lo, hi, box))
                out[dst] = found[1][src]
        return out

    def _union(self, shape: Shape) -> tuple[Box3, np.ndarray] | None:
        """The voxels inside any piece of `shape`: a box and its mask.

        Painting piece after piece sets a voxel iff some piece holds it and it was of an allowed
        tissue before the shape, so the union of the pieces' masks, applied once, paints the same;
        the order the pieces are looked at in does not matter.
        """
        pieces = list(_pieces(shape))
        if not pieces:
            return None
        boxes = self._index_boxes(np.array([p.lo for p in pieces], float), np.array([p.hi for p in pieces], float))
        jobs: list[tuple[list[_Piece], Box3, Box3, np.ndarray | None]] = []  # pieces, their box, the voxels to look at, blocks
        step = np.asarray(self.grid.spacing, float) / np.asarray(self.frame.scale, float)  # canonical mm per voxel
        run = _Run(float(step.max()), float(np.prod(step)))

        def flush() -> None:
            if run.pieces:
                box = tuple((min(b[a][0] for b in run.boxes), max(b[a][1] for b in run.boxes)) for a in range(3))
                sub = self._tight(box, np.array(run.lo) - BOX_SLACK_MM, np.array(run.hi) + BOX_SLACK_MM)  # type: ignore[arg-type]
                if sub is not None:
                    jobs.append((list(run.pieces), box, sub, None))  # type: ignore[arg-type]
                run.clear()

        for piece, box in zip(pieces, boxes):
            if box is None:
                continue
            block = self._block(box)
            if block is None and piece.tube is not None:
                if not run.add(piece, box):
                    flush()
                    run.add(piece, box)
                continue
            flush()
            sub = self._tight(box, piece.lo - BOX_SLACK_MM, piece.hi + BOX_SLACK_MM)
            if sub is not None:
                jobs.append(([piece], box, self._area(box, sub), block))
        flush()
        if not jobs:
            return None
        start = tuple(min(j[2][a][0] for j in jobs) for a in range(3))
        stop = tuple(max(j[2][a][1] for j in jobs) for a in range(3))
        union = np.zeros([b - a for a, b in zip(start, stop)], bool)
        for group, box, sub, block in jobs:
            self._inside(group, box, sub, block, union[_shifted(sub, start)])
        return tuple(zip(start, stop)), union  # type: ignore[return-value]

    def _inside(self, group: list[_Piece], box: Box3, sub: Box3, block: np.ndarray | None, u: np.ndarray) -> None:
        """Add to `u` (the union's mask over `sub`) the voxels where a piece of `group` (all with boxes within `box`) is below zero.

        A piece whose box has at least MIN_BLOCKED_VOXELS (and blocks of at least MIN_BLOCK_VOXELS)
        is decided coarse to fine: its distance is first evaluated at one voxel per block of about
        BLOCK_MM, a block whose value is farther from the surface than LIPSCHITZ times the block's
        diagonal lies wholly inside or outside, and only the voxels of the remaining blocks are
        evaluated one by one (`block`: the block edges). Other pieces are evaluated voxel by voxel.

        Only `sub` is looked at: the voxels whose canonical coordinates can lie within the pieces'
        canonical boxes (a piece is below zero nowhere else, and a block decided inside has its
        centre voxel inside; for a blocked piece `sub` is made of whole blocks, anchored at the
        start of `box`). So every voxel gets the label the piece would give it over its whole box.
        """
        s = (slice(None), *_slices(sub))
        one = group[0] if len(group) == 1 and group[0].tube is None else None
        if block is None:
            if u.size >= SKIP_MIN_VOXELS:
                done = np.count_nonzero(u)
                if done == u.size:
                    return
                if done > SKIP_MIN_FRACTION * u.size:
                    left = np.nonzero(~u)
                    if one is not None:
                        _, ny, nx = self.grid.shape
                        flat = ((left[0] + sub[0][0]) * ny + (left[1] + sub[1][0])) * nx + (left[2] + sub[2][0])
                        u[left] = self._distance(one, flat, lambda: self._points(flat)) < 0
                    else:
                        u[left] = _below(group, self.xyz[s][(slice(None), *left)])
                    return
            if one is not None:
                u |= self._distance(one, _slices(sub), lambda: self.xyz[s]) < 0
            else:
                u |= _below(group, self.xyz[s])
            return
        (piece,) = group
        starts = tuple(r[0] for r in box)
        lengths = tuple(r[1] - r[0] for r in box)
        first = [(r[0] - a) // b for r, a, b in zip(sub, starts, block)]
        last = [-(-(r[1] - a) // b) for r, a, b in zip(sub, starts, block)]
        spacing = np.array(self.grid.spacing[::-1], float)  # (z, y, x)
        reach = LIPSCHITZ * float(np.linalg.norm(block * spacing)) / float(np.min(self.frame.scale))
        centres = np.ix_(*(a + np.minimum(np.arange(f, e) * b + b // 2, n - 1) for a, f, e, b, n in zip(starts, first, last, block, lengths)))
        _, ny, nx = self.grid.shape
        flat = (centres[0] * ny + centres[1]) * nx + centres[2]  # grid-flat indices of the block centres
        coarse = self._distance(piece, flat, lambda: self._points(flat))
        shape = u.shape

        def full(flags: np.ndarray) -> np.ndarray:
            for axis, b in enumerate(block):
                flags = flags.repeat(b, axis=axis)
            return flags[: shape[0], : shape[1], : shape[2]]

        u |= full(coarse < -reach)
        near = full(np.abs(coarse) <= reach) & ~u
        r = np.flatnonzero(near)  # region-flat
        _, dj, di = shape
        k, rest = np.divmod(r, dj * di)
        j, i = np.divmod(rest, di)
        flat = ((k + sub[0][0]) * ny + (j + sub[1][0])) * nx + (i + sub[2][0])
        near.ravel()[r] = self._distance(piece, flat, lambda: self._points(flat)) < 0
        u |= near

    def remember(self, shapes: list[Shape]) -> None:
        """Keep the distances of these shapes, voxel by voxel, for every piece built on them (until forget)."""
        self._memo = {id(t): (t, None, None) for t in shapes}

    def forget(self) -> None:
        self._memo = None

    def _points(self, flat: np.ndarray) -> np.ndarray:
        """Canonical points (3, *flat.shape) of the voxels with grid-flat indices `flat`."""
        return np.take(self.xyz.reshape(3, -1), flat, axis=1)

    def _distance(self, piece: _Piece, at: tuple | np.ndarray, coords: Callable[[], np.ndarray]) -> np.ndarray:
        """piece.sdf at the voxels `at` (array slices, or grid-flat indices) whose canonical points are coords();
        the base shape's distances come from the memo where they were worked out before (the same numbers)."""
        entry = None if self._memo is None or piece.base is None else self._memo.get(id(piece.base))
        if entry is None or entry[0] is not piece.base:
            p = coords()
            return piece.sdf(p[0], p[1], p[2])
        base, values, known = entry
        if values is None:  # first use: work everything out and keep it
            p = coords()
            d = piece.base.sdf(p[0], p[1], p[2])
            values, known = np.empty(self.grid.shape, np.float32), np.zeros(self.grid.shape, bool)
            self._memo[id(base)] = (base, values, known)
            self._keep(values, known, at, d, None)
            return piece.clipped(d, coords)
        if isinstance(at, np.ndarray):
            d, have = np.take(values.reshape(-1), at), np.take(known.reshape(-1), at)
        else:
            d, have = np.array(values[at]), known[at]
        if not have.all():
            miss = ~have
            q = coords()[:, miss]
            d[miss] = base.sdf(q[0], q[1], q[2])
            self._keep(values, known, at, d, miss)
        return piece.clipped(d, coords)

    @staticmethod
    def _keep(values: np.ndarray, known: np.ndarray, at: tuple | np.ndarray, d: np.ndarray, miss: np.ndarray | None) -> None:
        if isinstance(at, np.ndarray):
            where = at if miss is None else at[miss]
            values.reshape(-1)[where.reshape(-1)] = (d if miss is None else d[miss]).reshape(-1)
            known.reshape(-1)[where.reshape(-1)] = True
        elif miss is None:
            values[at] = d
            known[at] = True
        else:
            values[at][miss] = d[miss]
            known[at][miss] = True

    def _block(self, box: Box3) -> np.ndarray | None:
        """Block edges (k, j, i voxels) for coarse-to-fine evaluation of `box`; None: voxel by voxel."""
        n = (box[0][1] - box[0][0]) * (box[1][1] - box[1][0]) * (box[2][1] - box[2][0])
        if n < MIN_BLOCKED_VOXELS:
            return None
        block = np.maximum(np.rint(BLOCK_MM / np.array(self.grid.spacing[::-1], float)).astype(int), 1)
        return None if np.prod(block) < MIN_BLOCK_VOXELS else block

    def _area(self, box: Box3, sub: Box3) -> Box3:
        """The voxels _inside looks at for `sub` of `box`: `sub` itself, or the blocks of `box` that meet it."""
        block = self._block(box)
        if block is None:
            return sub
        return tuple((s + (a - s) // b * b, min(s + -(-(e - s) // b) * b, stop))  # type: ignore[return-value]
                     for (a, e), (s, stop), b in zip(sub, box, block))

    def _tight(self, box: Box3, lo: np.ndarray, hi: np.ndarray) -> Box3 | None:
        """A sub-box of `box` holding every voxel whose canonical coordinates lie in [lo, hi]: slices,
        then rows, then columns whose coordinate range (over tiles that cover the box) misses it are dropped."""
        zt, yt, xt = self._tile_ranges()
        (k0, k1), (j0, j1), (i0, i1) = box
        t = TILE
        J0, J1, I0, I1 = j0 // t, -(-j1 // t), i0 // t, -(-i1 // t)
        k = _kept(zt[:, k0:k1, J0:J1, I0:I1], (2, 3), lo[2], hi[2])
        if k is None:
            return None
        k0, k1 = k0 + k[0], k0 + k[1]
        K0, K1 = k0 // t, -(-k1 // t)
        j = _kept(yt[:, K0:K1, j0:j1, I0:I1], (1, 3), lo[1], hi[1])
        if j is None:
            return None
        j0, j1 = j0 + j[0], j0 + j[1]
        J0, J1 = j0 // t, -(-j1 // t)
        i = _kept(xt[:, K0:K1, J0:J1, i0:i1], (1, 2), lo[0], hi[0])
        if i is None:
            return None
        return (k0, k1), (j0, j1), (i0 + i[0], i0 + i[1])

    def _tile_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Least and negated greatest canonical z per slice, y per row and x per column, over tiles of
        TILE x TILE voxels across the other two axes (made once per canvas): (2, ...) arrays."""
        if self._tiles is None:
            self._tiles = (_tile_ranges(self.cz, (1, 2)), _tile_ranges(self.cy, (0, 2)), _tile_ranges(self.cx, (0, 1)))
        return self._tiles


def _tile_ranges(a: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Least and negated greatest value of `a` over tiles of TILE voxels along each of `axes` (the last tile may be shorter)."""
    out = []
    for f in (np.minimum, np.maximum):
        r = a
        for ax in sorted(axes):  # outer axis first: whole rows or planes at a time
            n = r.shape[ax]
            first = [slice(None)] * 3
            first[ax] = slice(0, n, TILE)
            acc = r[tuple(first)].copy()
            for o in range(1, TILE):
                part = [slice(None)] * 3
                part[ax] = slice(o, n, TILE)
                v = r[tuple(part)]
                if v.shape[ax]:
                    tail = [slice(None)] * 3
                    tail[ax] = slice(0, v.shape[ax])
                    f(acc[tuple(tail)], v, out=acc[tuple(tail)])
            r = acc
        out.append(r)
    return np.stack([out[0], -out[1]])


def _kept(t: np.ndarray, axes: tuple[int, int], lo: float, hi: float) -> Range | None:
    """First and past-last index along the remaining axis of t = (least, -greatest) whose range over `axes` meets [lo, hi]."""
    r = t.min(axis=axes)
    ok = np.flatnonzero((r[1] <= -lo) & (r[0] <= hi))
    return (int(ok[0]), int(ok[-1]) + 1) if ok.size else None


def _slices(box: Box3) -> tuple[slice, slice, slice]:
    return tuple(slice(a, b) for a, b in box)  # type: ignore[return-value]


def _shifted(box: Box3, start: tuple[int, ...]) -> tuple[slice, slice, slice]:
    return tuple(slice(a - s, b - s) for (a, b), s in zip(box, start))  # type: ignore[return-value]


@dataclass(frozen=True)
class _RindKeep:
    """A clip -base - thickness: the rind of the piece's own base shape."""

    thickness: float


@dataclass(frozen=True)
class _Piece:
    """One piece of a shape: its signed distance, its canonical box and, for a tube segment, the tube and
    segment, else `base`, the shape whose distance it starts from; `keeps`: the clips it lies within
    (innermost first)."""

    sdf: SdfFn
    lo: np.ndarray
    hi: np.ndarray
    tube: Tube | None = None
    segment: int = 0
    keeps: tuple[SdfFn | _RindKeep, ...] = ()
    base: Shape | None = None

    def clipped(self, d: np.ndarray, coords: Callable[[], np.ndarray]) -> np.ndarray:
        """The piece's distance from its base's distance `d` (as the nested _clip_inside of `sdf` works it
        out); coords(): the canonical points (3, ...) of `d`, asked for only if a clip needs them."""
        base = d
        for keep in self.keeps:
            inside = d < 0
            if inside.any():
                d = np.array(d, copy=True)
                if isinstance(keep, _RindKeep):
                    k = -base[inside] - keep.thickness
                else:
                    q = coords()[:, inside]
                    k = keep(q[0], q[1], q[2])
                d[inside] = np.maximum(d[inside], k)
        return d


def _pieces(shape: Shape) -> Iterator[_Piece]:
    """Split unions, clipped unions and tubes into pieces with tight boxes (same voxels, faster)."""
    if isinstance(shape, Union):
        for p in shape.parts:
            yield from _pieces(p)
    elif isinstance(shape, Clipped):
        keep = shape.keep
        for p in _pieces(shape.shape):
            yield _Piece(lambda x, y, z, f=p.sdf: _clip_inside(f(x, y, z), keep, x, y, z), p.lo, p.hi, p.tube, p.segment, (*p.keeps, keep), p.base)
    elif isinstance(shape, Rind):
        inner = list(_pieces(shape.shape))
        t = shape.thickness
        if len(inner) == 1 and inner[0].base is shape.shape and not inner[0].keeps:
            p = inner[0]
            yield _Piece(lambda x, y, z, f=p.sdf: _rind_inside(f(x, y, z), t), p.lo, p.hi, None, 0, (_RindKeep(t),), p.base)
        else:
            yield from _pieces(Clipped(shape.shape, lambda x, y, z, f=shape.shape.sdf: -f(x, y, z) - t))
    elif isinstance(shape, Tube):
        lo, hi = _segment_boxes(shape)
        for i in range(len(lo)):
            yield _Piece(lambda x, y, z, i=i: shape.segment_sdf(i, x, y, z), lo[i], hi[i], shape, i)
    else:
        lo, hi = shape.bbox()
        yield _Piece(shape.sdf, np.asarray(lo, float), np.asarray(hi, float), base=shape)


def _segment_boxes(tube: Tube) -> tuple[np.ndarray, np.ndarray]:
    """Tube.segment_boxes() as two (n, 3) arrays (the same numbers)."""
    p, r = tube.points, tube.radii
    grow = np.maximum(r[:-1], r[1:])[:, None]
    return np.minimum(p[:-1], p[1:]) - grow, np.maximum(p[:-1], p[1:]) + grow


class _Run:
    """Consecutive segments of one tube (with the same clips) to evaluate together over one sub-box, while
    their canonical boxes (grown by `pad`) together stay not much larger than apart (`voxel`: a voxel's
    canonical volume)."""

    def __init__(self, pad: float, voxel: float) -> None:
        self.pad, self.voxel = pad, voxel
        self.clear()

    def clear(self) -> None:
        self.pieces: list[_Piece] = []
        self.boxes: list[Box3] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.own = 0.0

    def add(self, piece: _Piece, box: Box3) -> bool:
        """Take the segment into the run if it fits (an empty run takes any)."""
        plo, phi = piece.lo.tolist(), piece.hi.tolist()
        g = self.pad
        own = (phi[0] - plo[0] + 2 * g) * (phi[1] - plo[1] + 2 * g) * (phi[2] - plo[2] + 2 * g)
        if self.pieces:
            head = self.pieces[0]
            if piece.tube is not head.tube or piece.keeps != head.keeps or len(self.pieces) >= RUN_MAX_SEGMENTS:
                return False
            lo = [min(a, b) for a, b in zip(self.lo, plo)]
            hi = [max(a, b) for a, b in zip(self.hi, phi)]
            joint = (hi[0] - lo[0] + 2 * g) * (hi[1] - lo[1] + 2 * g) * (hi[2] - lo[2] + 2 * g)
            pairs = joint * (len(self.pieces) + 1)  # segments x voxels evaluated together, in voxels' volumes
            if pairs > RUN_MAX_GROWTH * (self.own + own) or pairs > RUN_MAX_PAIRS * self.voxel:
                return False
        else:
            lo, hi = plo, phi
        self.pieces.append(piece)
        self.boxes.append(box)
        self.lo, self.hi, self.own = lo, hi, self.own + own
        return True


def _below(group: list[_Piece], p: np.ndarray) -> np.ndarray:
    """Whether any piece of `group` is below zero at the canonical points p = (3, ...) (float32)."""
    if len(group) == 1 and group[0].tube is None:
        return group[0].sdf(p[0], p[1], p[2]) < 0
    tube, keeps = group[0].tube, group[0].keeps
    inside = _segments_below(tube, np.array([g.segment for g in group]), p)  # type: ignore[arg-type]
    for keep in keeps:
        if not inside.any():
            break
        q = p[:, inside]
        inside[inside] = keep(q[0], q[1], q[2]) < 0
    return inside


def _segments_below(tube: Tube, idx: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Whether Tube.segment_sdf(i, *p) < 0 for any i in idx: the same arithmetic, element for element,
    with the segments along a leading axis."""
    a, ab, l2, ra, dr = _segment_terms(tube)
    a, ab = a[idx].reshape(-1, 3, *(1,) * (p.ndim - 1)), ab[idx].reshape(-1, 3, *(1,) * (p.ndim - 1))
    shape = (-1, *(1,) * (p.ndim - 1))
    w = p - a  # float32 coordinates, float64 segment: float64, as in segment_sdf
    w *= ab
    t = w[:, 0] + w[:, 1]
    t += w[:, 2]
    t /= l2[idx].reshape(shape)
    np.clip(t, 0.0, 1.0, out=t)
    np.multiply(t[:, None], ab, out=w)  # a + t (b - a), reusing w
    w += a
    np.subtract(p, w, out=w)
    w *= w
    s = w[:, 0] + w[:, 1]
    s += w[:, 2]
    np.sqrt(s, out=s)
    r = t * dr[idx].reshape(shape)
    r += ra[idx].reshape(shape)
    return (s < r).any(axis=0)  # sqrt - r < 0 exactly when sqrt < r


_TERMS: dict[int, tuple[Tube, tuple[np.ndarray, ...]]] = {}


def _segment_terms(tube: Tube) -> tuple[np.ndarray, ...]:
    """Per segment: start a, b - a, |b - a|^2 (or 1e-9), start radius, radius change; as segment_sdf works them out."""
    hit = _TERMS.get(id(tube))
    if hit is not None and hit[0] is tube:
        return hit[1]
    n = len(tube.points) - 1
    diffs = [tube.points[i + 1] - tube.points[i] for i in range(n)]
    l2 = np.array([float(v @ v) or 1e-9 for v in diffs])
    ab = np.array(diffs, float).reshape(-1, 3)
    ra = np.array([tube.radii[i] for i in range(n)], float)
    dr = np.array([tube.radii[i + 1] - tube.radii[i] for i in range(n)], float)
    terms = (np.array(tube.points[:-1], float).reshape(-1, 3), ab, l2, ra, dr)
    if len(_TERMS) > 4096:
        _TERMS.clear()
    _TERMS[id(tube)] = (tube, terms)
    return terms


def _rind_inside(d: np.ndarray, thickness: float) -> np.ndarray:
    """_clip_inside(d, -base - thickness) where d is the base's own distance."""
    inside = d < 0
    if inside.any():
        d = np.array(d, copy=True)
        d[inside] = np.maximum(d[inside], -d[inside] - thickness)
    return d


def _clip_inside(d: np.ndarray, keep: SdfFn, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """max(d, keep) where d < 0, d elsewhere: the same sign as the clipped shape's distance, and
    never farther from zero, with `keep` evaluated only where it can matter."""
    inside = d < 0
    if inside.any():
        d = np.array(d, copy=True)
        d[inside] = np.maximum(d[inside], keep(x[inside], y[inside], z[inside]))
    return d


def paint_anatomy(canvas: Canvas, anatomy: Anatomy) -> None:
    """Paint every structure of the anatomy in order, then the CT table under the patient.

    The distances of a body outline that several structures are cut from (body and skin, the
    thoracic cavity and what is clipped from it) are worked out once per voxel."""
    uses: dict[int, list] = {}
    for s in anatomy.structures:
        for p in _pieces(s.shape):
            if isinstance(p.base, Profile):
                uses.setdefault(id(p.base), [p.base, 0])[1] += 1
    canvas.remember([t for t, n in uses.values() if n > 1])
    try:
        for s in anatomy.structures:
            canvas.paint(s.shape, s.tissue, s.over)
    finally:
        canvas.forget()
