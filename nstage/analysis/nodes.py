"""Lymph nodes read inside each station: candidates on the CT at its own resolution, measured on CT and PET.

Method (docs/node-reading.md), in one box around all stations at CT resolution:
- node tissue: CT smoothed lightly, between `soft_tissue_hu` (the lower bound lies halfway between
  fat and node tissue, so the mask's edge is the node's half-maximum edge; enhanced vessels lie
  above the upper bound), and calcium with the tissue around it;
- seeds: node tissue inside a station denser than `core_hu` (above the partial-volume rim that blur
  leaves along every vessel), each grown by at most `grow_mm` to the half-maximum edge within the
  station plus `margin_mm` (a node on a border is read whole, the vessel it touches is not);
- kept when node-like: volume, longest extent and elongation within limits, mostly fat or lung
  in a shell around it (a piece of a vessel or organ is surrounded by its own tissue), and little
  air or lung close round it (an airway wall, a vessel in the lung); a piece that is not is opened
  with a ball of `split_min_radius_mm` (after closing noise pin-holes) and its node-like parts kept;
- FDG foci above the blood pool near the stations that no CT candidate explains add the soft
  tissue around the focus, if that is node-like;
- each candidate goes to the station nearest to most of its voxels.
Measured as a radiologist does: short and long axis of the central axial section (from the node's
3-D moments, so thick slices do not shrink it), volume, mean HU, CT signs (calcification, fat
inside the node, a low-density centre), SUVmax and SUVpeak within `pet_margin_mm`, ratios to the
blood pool and the primary tumour, and the 5-point visual grade against the blood pool.

Arrays are ``[k, j, i]`` on the CT grid; points are LPS millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from nstage.analysis.measure import suv_peak_map
from nstage.analysis.node_settings import NodeSettings, node_settings
from nstage.analysis.node_signs import ct_signs
from nstage.geometry import Grid, resample, sub_grid
from nstage.stations import present_labels

VISUAL_GRADES = {1: "absent", 2: "below blood pool", 3: "equal to blood pool", 4: "above blood pool", 5: "far above blood pool"}




@dataclass(frozen=True)
class Node:
    """One node candidate (result.json `stations.<name>.nodes[]`; the field names are a contract)."""

    centre_lps: tuple[float, float, float]
    short_axis_mm: float
    long_axis_mm: float
    volume_ml: float
    hu_mean: float
    suv_max: float
    suv_peak: float
    blood_pool_ratio: float | None
    tumour_ratio: float | None
    calcified: bool
    fat_containing: bool
    low_density_centre: bool
    visual_grade: int | None
    source: str  # "ct" (soft-tissue blob) or "pet" (FDG focus without a CT blob of its own)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["centre_lps"] = [round(v, 1) for v in self.centre_lps]
        for k in ("short_axis_mm", "long_axis_mm", "hu_mean"):
            d[k] = round(d[k], 1)
        for k in ("suv_max", "suv_peak"):
            d[k] = round(d[k], 3)
        d["volume_ml"] = round(self.volume_ml, 3)
        for k in ("blood_pool_ratio", "tumour_ratio"):
            d[k] = None if d[k] is None else round(d[k], 3)
        d["visual_grade_text"] = VISUAL_GRADES.get(self.visual_grade or 0, "not graded (no blood pool)")
        return d


@dataclass(frozen=True)
class StationNodes:
    """The nodes read in one station: the index node (or None) and the others, index node first."""

    index_node: Node | None
    nodes: tuple[Node, ...]
    candidates: int  # all candidates found before keeping the first `max_nodes_per_station`


def visual_grade(suv_max: float, blood_pool: float | None, s: NodeSettings) -> int | None:
    """5-point scale against the mediastinal blood pool: 1 absent ... 5 far above (None without a blood pool)."""
    if blood_pool is None or blood_pool <= 0:
        return None
    r = suv_max / blood_pool
    absent, below, equal, above = s.grade_ratios
    return 1 if r < absent else 2 if r < below else 3 if r <= equal else 4 if r <= above else 5


def axial_axes(mask2d: np.ndarray, spacing_xy: tuple[float, float]) -> tuple[float, float]:
    """Long and short axis (mm) of a 2-D cross-section: the ellipse of the same area and second moments."""
    j, i = np.nonzero(mask2d)
    if j.size == 0:
        return 0.0, 0.0
    pts = np.stack([i * spacing_xy[0], j * spacing_xy[1]], axis=1)
    area = j.size * spacing_xy[0] * spacing_xy[1]
    if j.size < 3:
        d = 2.0 * np.sqrt(area / np.pi)
        return d, d
    ev = np.clip(np.linalg.eigvalsh(np.cov(pts.T) + np.diag([spacing_xy[0] ** 2, spacing_xy[1] ** 2]) / 12.0), 1e-9, None)
    ratio = float(np.sqrt(ev[0] / ev[1]))  # short / long
    a = np.sqrt(area / (np.pi * ratio))  # semi long axis of the ellipse of that area and ratio
    return float(2 * a), float(2 * a * ratio)


def ellipsoid_axial_axes(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """Long and short axis (mm) of the central axial section of the ellipsoid with the node's volume and moments.

    Sub-slice: on thick slices the slice nearest a node's centre may miss its widest section, and
    each slice averages the node over its thickness; the 3-D moments see the whole node.
    """
    k, j, i = np.nonzero(mask)
    sx, sy, sz = spacing
    pts = np.stack([i * sx, j * sy, k * sz], axis=1)
    cov = np.cov(pts.T) + np.diag([sx * sx, sy * sy, sz * sz]) / 12.0
    shape_matrix = 5.0 * cov  # a uniform ellipsoid x^T (5 cov)^-1 x <= 1 has these second moments
    volume = k.size * sx * sy * sz
    scale = (volume / (4.0 / 3.0 * np.pi * np.sqrt(max(np.linalg.det(shape_matrix), 1e-12)))) ** (1.0 / 3.0)
    section = np.linalg.inv(np.linalg.inv(shape_matrix)[:2, :2])  # the central z = const section, as a 2x2 shape matrix
    ev = np.clip(np.linalg.eigvalsh(section), 1e-9, None)
    return float(2 * scale * np.sqrt(ev[1])), float(2 * scale * np.sqrt(ev[0]))


def _ball(radius_mm: float, spacing: tuple[float, float, float], whole_slices: bool = False) -> np.ndarray:
    """Voxels within `radius_mm` of the centre; with `whole_slices` at least one slice above and below."""
    sx, sy, sz = spacing
    rz = max(radius_mm, sz) if whole_slices else radius_mm
    n = [int(np.floor(rz / sz)), int(np.floor(radius_mm / sy)), int(np.floor(radius_mm / sx))]
    k, j, i = np.meshgrid(*(np.arange(-m, m + 1) for m in n), indexing="ij")
    return ((k * sz / rz) ** 2 + (j * sy / radius_mm) ** 2 + (i * sx / radius_mm) ** 2) <= 1.0


def _step_ball(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """`_ball`, and at least one voxel's step along each axis: a growth limit below the voxel size still grows."""
    b = _ball(radius_mm, spacing)
    b = np.pad(b, [(max(0, 1 - n // 2), max(0, 1 - n // 2)) for n in b.shape])
    c = tuple(n // 2 for n in b.shape)
    for axis in range(3):
        for d in (-1, 1):
            at = list(c)
            at[axis] += d
            b[tuple(at)] = True
    return b


Box = tuple[slice, slice, slice]


def _pad(box: Box, pad: int | tuple[int, ...], shape: tuple[int, ...]) -> Box:
    p = (pad,) * 3 if isinstance(pad, int) else pad
    return tuple(slice(max(b.start - q, 0), min(b.stop + q, n)) for b, q, n in zip(box, p, shape))  # type: ignore[return-value]


@dataclass
class _Context:
    """The mediastinal box: CT, smoothed CT, node-density mask, SUV and SUVpeak at CT resolution, station regions."""

    grid: Grid
    hu: np.ndarray
    smooth: np.ndarray  # for finding nodes
    signs: np.ndarray  # lightly smoothed, for the CT signs inside a node
    soft: np.ndarray  # node-density voxels (soft tissue, or calcium and the soft tissue around it)
    bone: np.ndarray  # calcium in structures larger than any calcified node (vertebrae, ribs, sternum)
    suv: np.ndarray
    peak: np.ndarray
    region: np.ndarray  # within margin_mm of a station
    inside: np.ndarray  # in a station
    owner: np.ndarray  # the station label nearest to each voxel


@dataclass(frozen=True)
class _Blob:
    """A candidate's voxels: a box in the context and the mask inside it."""

    box: Box
    mask: np.ndarray

    def padded(self, ctx: _Context, pad: int) -> tuple[Box, np.ndarray]:
        """A larger box around the blob (for rings and fills) and the blob's mask in it."""
        big = _pad(self.box, pad, ctx.hu.shape)
        m = np.zeros(tuple(b.stop - b.start for b in big), bool)
        m[tuple(slice(b.start - B.start, b.stop - B.start) for b, B in zip(self.box, big))] = self.mask
        return big, m


def _context(hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid, peak: np.ndarray, stations: np.ndarray,
             s: NodeSettings) -> _Context | None:
    k, j, i = np.nonzero(stations)
    if k.size == 0:
        return None
    pad = tuple(int(np.ceil(s.context_mm / sp)) for sp in ct_grid.spacing[::-1])
    box = _pad((slice(k.min(), k.max() + 1), slice(j.min(), j.max() + 1), slice(i.min(), i.max() + 1)), pad, stations.shape)
    g = sub_grid(ct_grid, box)
    sub_hu = np.asarray(hu[box], np.float32)
    sig = [s.smooth_sigma_mm / sp for sp in g.spacing[::-1]]
    smooth = ndimage.gaussian_filter(sub_hu, [v if v >= 0.3 else 0.0 for v in sig], mode="nearest")
    sig = [s.signs_sigma_mm / sp for sp in g.spacing[::-1]]
    signs = ndimage.gaussian_filter(sub_hu, [v if v >= 0.3 else 0.0 for v in sig], mode="nearest")
    labels = stations[box]
    dist, nearest = ndimage.distance_transform_edt(labels == 0, sampling=g.spacing[::-1], return_indices=True)
    owner = labels[tuple(nearest)]
    del nearest
    lo, hi = s.soft_tissue_hu
    calcium = smooth >= s.calcium_hu
    near_calcium = ndimage.binary_dilation(calcium, structure=_ball(2.0, g.spacing)) if calcium.any() else calcium
    soft = (smooth >= lo) & ((smooth <= hi) | near_calcium)  # enhanced vessels (above hi) stay out, calcified nodes whole
    return _Context(g, sub_hu, smooth, signs, soft, _large_parts(calcium, s.bone_min_volume_ml / g.voxel_volume_ml),
                    resample(suv, pet_grid, g, order=0), resample(peak, pet_grid, g, order=0), dist <= s.margin_mm, labels > 0, owner)


def _large_parts(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """The connected parts of `mask` of at least `min_voxels` voxels."""
    if not mask.any():
        return mask
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


def _station_of(blob: _Blob, ctx: _Context, s: NodeSettings) -> int:
    """The station a blob belongs to (most of its voxels nearest to it), or 0 when it lies mostly outside the regions."""
    region = ctx.region[blob.box] & blob.mask
    n = int(blob.mask.sum())
    if n == 0 or np.count_nonzero(region) < s.min_inside_fraction * n:
        return 0
    return int(np.argmax(np.bincount(ctx.owner[blob.box][region].ravel(), minlength=256)))


def _around(blob: _Blob, ctx: _Context, s: NodeSettings) -> tuple[float, float]:
    """Fractions of a ring `air_ring_mm` outside the candidate that are air or lung (below `air_hu`) and bone.

    Mediastinal and hilar nodes lie in fat; soft tissue with air close round a large part of it is an
    airway wall (the carina, a bronchus cut across) or a vessel in the lung, and soft tissue along
    a bone is paravertebral muscle (the diaphragmatic crus) or the partial volume of the bone's edge.
    """
    r0, r1 = s.air_ring_mm
    sp = ctx.grid.spacing[::-1]
    big, m = blob.padded(ctx, max(1, int(np.ceil(r1 / min(sp)))) + 1)
    d = ndimage.distance_transform_edt(~m, sampling=sp)
    ring = (d > r0) & (d <= r1)
    if not ring.any():
        return 0.0, 0.0
    return float(np.mean(ctx.smooth[big][ring] < s.air_hu)), float(np.mean(ctx.bone[big][ring]))


def _fits(blob: _Blob, ctx: _Context, s: NodeSettings, surround: bool = True) -> bool:
    """Within the size and shape limits of a node, and (with `surround`) lying in fat or lung, not a piece of a larger organ."""
    n = int(blob.mask.sum())
    if n == 0 or n * ctx.grid.voxel_volume_ml > s.max_volume_ml:
        return False
    idx = np.argwhere(blob.mask)
    sp = np.asarray(ctx.grid.spacing)[::-1]
    ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * sp
    if float(np.max(ext)) > s.max_long_axis_mm:
        return False
    if n >= 8:
        ev = np.clip(np.linalg.eigvalsh(np.cov((idx * sp).T) + np.diag(sp**2) / 12.0), 1e-9, None)
        if float(np.sqrt(ev[-1] / ev[0])) > s.max_elongation:
            return False
    if not surround:
        return True
    air, bone = _around(blob, ctx, s)
    if air > s.max_air_around or bone > s.max_bone_around:  # an airway wall, a vessel in the lung, muscle along a bone
        return False
    ring_pad = max(1, int(np.ceil(s.surround_mm / min(ctx.grid.spacing))))
    big, m = blob.padded(ctx, ring_pad)
    ring = ndimage.binary_dilation(m, structure=_ball(s.surround_mm, ctx.grid.spacing)) & ~m
    if not ring.any():
        return True
    around = ctx.smooth[big][ring]
    fat = (around >= s.surround_fat_hu[0]) & (around < s.soft_tissue_hu[0])
    # fat or lung around it, and some fat: a vessel cut across in the lung has lung all round and no fat
    return float(np.mean(around < s.soft_tissue_hu[0])) >= s.min_fat_surround and float(np.mean(fat)) >= s.min_fat_in_surround


def _split(blob: _Blob, ctx: _Context, s: NodeSettings) -> list[_Blob]:
    """Node-like pieces of a structure that is too large to be one node (nodes pressed against a vessel).

    A morphological opening with a ball of `split_min_radius_mm` removes what is thinner than the
    ball (a vessel or airway wall entering the station margin as a shell) and keeps the nodes that
    are thicker; noise pin-holes are closed first, or they would open the node itself.
    """
    spacing = ctx.grid.spacing
    pad = max(int(np.ceil(max(s.split_closing_mm, s.split_min_radius_mm) / sp)) for sp in spacing) + 1
    m = np.pad(blob.mask, pad)
    solid = ndimage.binary_closing(m, structure=_ball(s.split_closing_mm, spacing)) | m
    opened = ndimage.binary_opening(solid, structure=_ball(s.split_min_radius_mm, spacing, whole_slices=True))[pad:-pad, pad:-pad, pad:-pad]
    lab, _ = ndimage.label(opened & blob.mask)
    out = []
    for i, box in enumerate(ndimage.find_objects(lab), start=1):
        piece = _Blob(tuple(slice(blob.box[a].start + box[a].start, blob.box[a].start + box[a].stop) for a in range(3)),  # type: ignore[arg-type]
                      lab[box] == i)
        if _fits(piece, ctx, s):
            out.append(piece)
    return out


def _measure(ctx: _Context, blob: _Blob, blood_pool: float | None, tumour_suv: float | None, source: str,
             s: NodeSettings) -> Node | None:
    """A Node from its voxels, or None when it is too small to be a node."""
    g = ctx.grid
    sx, sy, sz = g.spacing
    mask = blob.mask
    if int(mask.sum()) >= 8 and int(np.count_nonzero(mask.any(axis=(1, 2)))) >= 2:
        long_ax, short_ax = ellipsoid_axial_axes(mask, g.spacing)
    else:
        long_ax, short_ax = axial_axes(mask[int(np.argmax(mask.sum(axis=(1, 2))))], (sx, sy))
    if short_ax < s.min_short_axis_mm:
        return None
    idx = np.argwhere(mask) + np.array([b.start for b in blob.box])
    centre = tuple(float(v) for v in g.index_to_lps(idx.mean(axis=0)[::-1]))
    pad = max(1, int(np.ceil(s.pet_margin_mm / min(g.spacing))))
    big, m = blob.padded(ctx, pad)
    signs = ct_signs(ctx.hu[big], ctx.signs[big], m, g.spacing, short_ax, s)
    near = ndimage.binary_dilation(m, structure=_ball(s.pet_margin_mm, g.spacing)) if s.pet_margin_mm > 0 else m
    suv_max = float(ctx.suv[big][near].max())
    suv_peak = float(ctx.peak[big][near].max())
    return Node(
        centre_lps=centre, short_axis_mm=short_ax, long_axis_mm=long_ax, volume_ml=float(mask.sum()) * g.voxel_volume_ml,
        hu_mean=signs.hu_mean, suv_max=suv_max, suv_peak=suv_peak,
        blood_pool_ratio=suv_max / blood_pool if blood_pool else None,
        tumour_ratio=suv_max / tumour_suv if tumour_suv else None,
        calcified=signs.calcified, fat_containing=signs.fat_containing, low_density_centre=signs.low_density_centre,
        visual_grade=visual_grade(suv_max, blood_pool, s), source=source,
    )


def _ct_blobs(ctx: _Context, s: NodeSettings) -> list[_Blob]:
    """Node-density structures found inside the stations, completed across their borders, node-like whole or split.

    The stations are mediastinal and hilar fat, so soft tissue inside them is node tissue, or an
    organ the map overlaps. Each piece is grown by at most `margin_mm` into the soft tissue around
    it (nodes on a border are read whole), not further: a vessel it touches stays out. The pieces
    are seeded at `core_hu`, above the partial-volume rim that blur leaves along every vessel, and
    grown by `grow_mm` to the half-maximum edge (`soft_tissue_hu`).
    """
    core = ctx.soft & ctx.inside & (ctx.smooth >= s.core_hu)
    lab, _ = ndimage.label(core)
    ball = _step_ball(s.grow_mm, ctx.grid.spacing)
    pad = tuple(r // 2 + 1 for r in ball.shape)
    out: list[_Blob] = []
    for i, box in enumerate(ndimage.find_objects(lab), start=1):
        seed = lab[box] == i
        if int(seed.sum()) < 3:
            continue
        big = _pad(box, pad, ctx.hu.shape)
        m = np.zeros(tuple(b.stop - b.start for b in big), bool)
        m[tuple(slice(b.start - B.start, b.stop - B.start) for b, B in zip(box, big))] = seed
        grown = ndimage.binary_dilation(m, structure=ball) & ctx.soft[big] & ctx.region[big]
        whole = _Blob(big, ndimage.binary_propagation(m, mask=grown))
        if _fits(whole, ctx, s):
            out.append(whole)
        else:
            out.extend(_split(whole, ctx, s))
    return out


def _shell(r0_mm: float, r1_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxels between `r0_mm` and `r1_mm` from the centre of a box ``[k, j, i]``."""
    sx, sy, sz = spacing
    n = [int(np.floor(r1_mm / sp)) for sp in (sz, sy, sx)]
    k, j, i = np.meshgrid(*(np.arange(-m, m + 1) * sp for m, sp in zip(n, (sz, sy, sx))), indexing="ij")
    d = np.sqrt(k * k + j * j + i * i)
    return (d >= r0_mm) & (d <= r1_mm)


def _background_suv(ctx: _Context, p: np.ndarray, shell: np.ndarray) -> float:
    """Median SUV of a shell around voxel `p` (the part of it inside the context box)."""
    r = np.array(shell.shape) // 2
    box = tuple(slice(max(int(p[a] - r[a]), 0), min(int(p[a] + r[a]) + 1, ctx.suv.shape[a])) for a in range(3))
    cut = tuple(slice(b.start - int(p[a] - r[a]), b.stop - int(p[a] - r[a])) for a, b in enumerate(box))
    return float(np.median(ctx.suv[box][shell[cut]]))


def _focus_blobs(ctx: _Context, taken: list[_Blob], blood_pool: float | None, s: NodeSettings) -> list[_Blob]:
    """FDG foci near the stations that stand out of their surroundings and that no CT blob explains:
    the soft tissue around each focus.

    The contrast test (SUV at the focus against the median of a shell round it) keeps a node beside the
    heart and drops the edge of the myocardium itself, whose noise makes local maxima inside a station
    that overlaps it.
    """
    limit = max(s.focus_min_suv, s.focus_min_blood_pool_ratio * blood_pool) if blood_pool else s.focus_min_suv
    hot = (ctx.suv >= limit) & ctx.region
    if not hot.any():
        return []
    ball = _ball(s.focus_radius_mm, ctx.grid.spacing)
    r = np.array(ball.shape) // 2
    covered = np.zeros(ctx.hu.shape, bool)
    for b in taken:
        covered[b.box] |= b.mask
    k, j, i = np.nonzero(hot)  # work in the box of the hot voxels only (filters at CT resolution are slow)
    hb = _pad((slice(k.min(), k.max() + 1), slice(j.min(), j.max() + 1), slice(i.min(), i.max() + 1)), tuple(int(v) for v in r), hot.shape)
    local = ctx.suv[hb] == ndimage.maximum_filter(ctx.suv[hb], size=ball.shape)  # a box: separable, so fast
    peaks = hot[hb] & local & ~ndimage.binary_dilation(covered[hb], structure=ball)
    shell = _shell(*s.focus_background_mm, ctx.grid.spacing)
    out: list[_Blob] = []
    for p in np.argwhere(peaks) + np.array([b.start for b in hb]):
        box = _pad(tuple(slice(int(v), int(v) + 1) for v in p), tuple(int(v) for v in r), ctx.hu.shape)
        if covered[tuple(int(v) for v in p)]:
            continue
        if ctx.suv[tuple(int(v) for v in p)] < s.focus_min_contrast * _background_suv(ctx, p, shell):
            continue
        off = p - np.array([b.start for b in box])
        sphere = ball[tuple(slice(int(r[a] - off[a]), int(r[a] - off[a]) + (box[a].stop - box[a].start)) for a in range(3))]
        tissue = sphere & ctx.soft[box] & ctx.region[box] & (ctx.smooth[box] < s.calcium_hu)
        lab, _ = ndimage.label(tissue)
        at = lab[tuple(off)]
        blob = _Blob(box, (lab == at) if at else tissue)
        # a focus inside a station may be a node too large or too pressed against a vessel for the CT
        # path, and the sphere cut leaves node tissue around the piece: no surround test there
        if blob.mask.any() and _fits(blob, ctx, s, surround=not bool(ctx.inside[tuple(int(v) for v in p)])):
            out.append(blob)
            covered[box] |= blob.mask
    return out


def index_node(nodes: list[Node] | tuple[Node, ...], s: NodeSettings) -> Node | None:
    """The node a radiologist reports: the hottest FDG-avid one (the largest of those within
    `index_suv_tolerance` of the hottest), else the largest (short axis)."""
    if not nodes:
        return None
    avid = [n for n in nodes if n.visual_grade is not None and n.visual_grade >= s.avid_visual_grade]
    if avid:
        hottest = max(n.suv_max for n in avid)
        # PET blur spreads a node's uptake onto what lies beside it: among the nodes about as hot, the largest
        return max((n for n in avid if n.suv_max >= s.index_suv_tolerance * hottest), key=lambda n: n.short_axis_mm)
    return max(nodes, key=lambda n: n.short_axis_mm)


def read_nodes(hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid, stations: np.ndarray,
               names: Mapping[int, str], blood_pool: float | None, tumour_suv: float | None,
               settings: NodeSettings | None = None, peak: np.ndarray | None = None) -> dict[str, StationNodes]:
    """The nodes of every labelled station (station name -> StationNodes; every station of `names` in the map)."""
    s = settings or node_settings()
    present = [lab for lab in present_labels(stations) if lab in names]
    if not present:
        return {}
    peak = suv_peak_map(suv, pet_grid) if peak is None else peak  # SUVpeak of every PET voxel
    ctx = _context(hu, ct_grid, suv, pet_grid, peak, stations, s)
    assert ctx is not None
    by_station: dict[int, list[Node]] = {int(lab): [] for lab in present}
    ct = _ct_blobs(ctx, s)
    for blobs, source in ((ct, "ct"), (_focus_blobs(ctx, ct, blood_pool, s), "pet")):
        for blob in blobs:
            st = _station_of(blob, ctx, s)
            if st in by_station and (node := _measure(ctx, blob, blood_pool, tumour_suv, source, s)) is not None:
                by_station[st].append(node)
    out: dict[str, StationNodes] = {}
    for lab, found in by_station.items():
        best = index_node(found, s)
        rest = sorted((n for n in found if n is not best), key=lambda n: -n.short_axis_mm)
        kept = ((best,) if best else ()) + tuple(rest)
        out[names[lab]] = StationNodes(best, kept[: s.max_nodes_per_station], len(found))
    return out
