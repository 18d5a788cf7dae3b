"""The report's images: a coronal PET MIP with station outlines and axial CT/PET fusion slices.

Every image is sampled on an axis-aligned LPS grid whatever the orientation of the source series,
and carries the millimetre coordinates of its pixel centres, so the drawing functions place it in
radiological convention:
- coronal MIP: head up, the patient's right on the image's left (LPS x grows to the image's right);
- axial slice, seen from the feet: anterior up (LPS y grows downwards), patient's right on the left.
Station outlines are drawn as contours in the same millimetre coordinates, coloured by call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid, corners_lps, resample
from nstage.outputs.report.style import ReportStyle
from nstage.stations import present_labels

AXIS_ATOL = 1e-4


@dataclass(frozen=True)
class Plane:
    """A 2-D image ``[rows, cols]`` with the LPS mm coordinates of its row and column centres.

    Columns always run along LPS x. Rows run along z (coronal) or y (axial), increasing with the
    row index."""

    image: np.ndarray
    cols_mm: np.ndarray
    rows_mm: np.ndarray

    def extent(self) -> tuple[float, float, float, float]:
        """(x_left, x_right, row_first, row_last) edges in mm, for imshow with ``origin='lower'``."""
        hx = _half_step(self.cols_mm)
        hr = _half_step(self.rows_mm)
        return (float(self.cols_mm[0] - hx), float(self.cols_mm[-1] + hx),
                float(self.rows_mm[0] - hr), float(self.rows_mm[-1] + hr))


def _half_step(coords: np.ndarray) -> float:
    return float(coords[1] - coords[0]) / 2.0 if coords.size > 1 else 0.5


def _is_identity(grid: Grid) -> bool:
    return bool(np.allclose(grid.direction, np.eye(3), atol=AXIS_ATOL))


def _box_grid(grid: Grid, lo_idx: Sequence[int], hi_idx: Sequence[int]) -> Grid:
    """The sub-grid of voxels ``[k0:k1, j0:j1, i0:i1]`` (bounds given as (k, j, i))."""
    k0, j0, i0 = lo_idx
    k1, j1, i1 = hi_idx
    origin = grid.index_to_lps(np.array([i0, j0, k0], dtype=float))
    return Grid(shape=(k1 - k0, j1 - j0, i1 - i0), spacing=grid.spacing, origin=tuple(origin), direction=grid.direction)


def nonzero_box(mask: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """Index bounds ``((k0, j0, i0), (k1, j1, i1))`` (end exclusive) of the non-zero voxels; None if none."""
    bounds = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        bounds.append((int(hit[0]), int(hit[-1]) + 1))
    return (bounds[0][0], bounds[1][0], bounds[2][0]), (bounds[0][1], bounds[1][1], bounds[2][1])


def axis_aligned(array: np.ndarray, grid: Grid, spacing_mm: float | None = None, order: int = 1,
                 fill: float = 0.0) -> tuple[np.ndarray, Grid]:
    """The array on an identity-direction grid: as it is when it already has one and no new
    spacing is asked for, else resampled onto the axis-aligned box covering it."""
    if _is_identity(grid) and spacing_mm is None:
        return array, grid
    if spacing_mm is None:  # keep the resolution along each patient axis
        sp = tuple(float(v) for v in np.abs(grid.direction) @ np.asarray(grid.spacing))
    else:
        sp = (float(spacing_mm),) * 3
    c = corners_lps(grid)
    target = Grid.covering(c.min(axis=0), c.max(axis=0), tuple(sp))
    return resample(array, grid, target, order=order, fill=fill), target


# --- station label map: a coarse axis-aligned copy around the stations ------------------------

@dataclass(frozen=True)
class StationMap:
    """The station label map around the stations, on a coarse axis-aligned LPS grid."""

    labels: np.ndarray  # [k, j, i] uint8
    grid: Grid

    def present(self) -> list[int]:
        return present_labels(self.labels)

    def coronal_outline(self, label: int) -> Plane:
        """The station projected along the anterior-posterior axis, padded by one empty pixel."""
        mask = np.any(self.labels == label, axis=1)  # [k, i]
        xs, _, zs = self.grid.axis_coordinates()
        return _padded(mask, xs, zs)

    def centroid_lps(self, label: int | None = None) -> np.ndarray | None:
        """Centre of one station (or of all stations when label is None); None when absent."""
        mask = self.labels > 0 if label is None else self.labels == label
        if not mask.any():
            return None
        k, j, i = ndimage.center_of_mass(mask)
        return self.grid.index_to_lps(np.array([i, j, k]))

    def box_lps(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) LPS corners of the grid (the stations plus nothing)."""
        c = corners_lps(self.grid)
        return c.min(axis=0), c.max(axis=0)


def _padded(mask: np.ndarray, xs: np.ndarray, rows: np.ndarray) -> Plane:
    """A mask with one empty pixel around it, so that contours close at the edges."""
    dx = xs[1] - xs[0] if xs.size > 1 else 1.0
    dr = rows[1] - rows[0] if rows.size > 1 else 1.0
    return Plane(np.pad(mask, 1), np.concatenate([[xs[0] - dx], xs, [xs[-1] + dx]]),
                 np.concatenate([[rows[0] - dr], rows, [rows[-1] + dr]]))


def station_map(stations: np.ndarray, ct_grid: Grid, spacing_mm: float) -> StationMap | None:
    """Crop the label map to its stations and resample it (nearest label) to `spacing_mm`; None if empty."""
    box = nonzero_box(stations)
    if box is None:
        return None
    (k0, j0, i0), (k1, j1, i1) = box
    sub = np.ascontiguousarray(stations[k0:k1, j0:j1, i0:i1])
    sub_grid = _box_grid(ct_grid, (k0, j0, i0), (k1, j1, i1))
    c = corners_lps(sub_grid)
    target = Grid.covering(c.min(axis=0), c.max(axis=0), (spacing_mm,) * 3)
    return StationMap(resample(sub, sub_grid, target, order=0, fill=0).astype(np.uint8, copy=False), target)


# --- coronal PET MIP ------------------------------------------------------------------------------

def coronal_mip(suv: np.ndarray, pet_grid: Grid, z_limits: tuple[float, float] | None = None) -> Plane:
    """Maximum SUV along the anterior-posterior axis: ``image[z, x]``, rows by increasing z (foot to head).

    `z_limits` (mm) keeps only the slices between them (the whole field of view when None or
    when they miss it)."""
    a, g = axis_aligned(suv, pet_grid, order=1, fill=0.0)
    xs, _, zs = g.axis_coordinates()
    if z_limits is not None:
        keep = np.flatnonzero((zs >= z_limits[0]) & (zs <= z_limits[1]))
        if keep.size:
            a, zs = a[keep[0]: keep[-1] + 1], zs[keep[0]: keep[-1] + 1]
    return Plane(np.asarray(a.max(axis=1), dtype=np.float32), xs, zs)


# --- axial fusion slices --------------------------------------------------------------------------

@dataclass(frozen=True)
class AxialSlice:
    """CT (HU), PET (SUV) and station labels on one axial plane; rows along y, columns along x."""

    z_mm: float
    ct: Plane
    suv: Plane
    labels: Plane


def snap_to_ct_slice(point_lps: Sequence[float], ct_grid: Grid) -> float:
    """The z of the CT slice nearest to the point when CT slices are axial, else the point's z."""
    p = np.asarray(point_lps, dtype=float)
    if abs(abs(ct_grid.direction[2, 2]) - 1.0) > AXIS_ATOL:
        return float(p[2])
    ijk = ct_grid.lps_to_index(p)
    k = float(np.clip(np.round(ijk[2]), 0, ct_grid.shape[0] - 1))
    return float(ct_grid.index_to_lps(np.array([ijk[0], ijk[1], k]))[2])


def axial_slice(hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid, stations: np.ndarray, z_mm: float,
                xy_lo: Sequence[float], xy_hi: Sequence[float], spacing_mm: float) -> AxialSlice:
    """CT, PET and labels sampled on the axial plane ``z = z_mm`` over the box ``[xy_lo, xy_hi]`` (mm).

    The PET is resampled onto the plane itself (trilinear), the labels by nearest neighbour."""
    lo = np.array([xy_lo[0], xy_lo[1], z_mm], dtype=float)
    hi = np.array([xy_hi[0], xy_hi[1], z_mm], dtype=float)
    plane = Grid.covering(lo, hi, (spacing_mm, spacing_mm, 1.0))
    xs, ys, _ = plane.axis_coordinates()
    ct = resample(hu, ct_grid, plane, order=1, fill=-1000.0)[0]
    pet = resample(suv, pet_grid, plane, order=1, fill=0.0)[0]
    lab = resample(stations, ct_grid, plane, order=0, fill=0)[0]
    return AxialSlice(float(z_mm), Plane(ct, xs, ys), Plane(pet, xs, ys), Plane(lab, xs, ys))


@dataclass(frozen=True)
class SlicePick:
    """Where one axial slice goes and which stations it shows."""

    point_lps: tuple[float, float, float]
    stations: tuple[str, ...]  # the stations whose index node (or hottest point) is on this slice
    fallback: bool = False  # no station to show: the slice shows the fallback station's region
    marks: tuple[tuple[float, float, float], ...] = ()  # where the arrows point: one per station, in order


def index_node(values: Mapping[str, object]) -> Mapping[str, object] | None:
    """The station's index node (result.json ``stations.<name>.index_node``) when it has a centre; None
    when no node was found or the result predates node reading."""
    node = values.get("index_node")
    if isinstance(node, Mapping) and node.get("centre_lps") is not None:
        return node
    return None


def station_point(values: Mapping[str, object]) -> tuple[float, float, float] | None:
    """Where a slice through the station goes: its index node's centre, else its hottest point."""
    node = index_node(values)
    p = node["centre_lps"] if node is not None else values.get("hottest_point_lps")
    if p is None:
        return None
    return tuple(float(v) for v in p)  # type: ignore[union-attr, return-value]


def _slice_order(result_stations: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Stations to show, best first.

    With index nodes (node reading): every station with an index node and every malignant
    station, the malignant first, then by SUVmax (of the index node; of the station when it has
    none). Without any index node (older results): the malignant stations, most probable first."""
    def f(v: object) -> float:
        return float(v) if v is not None else 0.0  # type: ignore[arg-type]

    if any(index_node(v) is not None for v in result_stations.values()):
        shown = [s for s, v in result_stations.items() if station_point(v) is not None and (index_node(v) is not None or v.get("malignant"))]

        def suv(s: str) -> float:
            node = index_node(result_stations[s])
            return f((node or result_stations[s]).get("suv_max"))

        return sorted(shown, key=lambda s: (not result_stations[s].get("malignant"), -suv(s), s))
    return sorted(
        (s for s, v in result_stations.items() if v.get("malignant") and v.get("hottest_point_lps") is not None),
        key=lambda s: (-f(result_stations[s].get("probability")), -f(result_stations[s].get("suv_max")), s),
    )


def pick_slices(result_stations: Mapping[str, Mapping[str, object]], smap: StationMap | None,
                label_of: Mapping[str, int], max_slices: int, min_separation_mm: float, fallback_station: str,
                ct_grid: Grid) -> list[SlicePick]:
    """Up to `max_slices` slices, each centred on a station's index node (see :func:`_slice_order`:
    malignant stations first, then the highest index-node SUVmax); without index nodes, through
    the hottest points of the positive stations (most probable first). Malignant stations within
    `min_separation_mm` in z share a slice (a benign one near a slice is left out). With nothing to show: one slice through the fallback
    station (else through all stations, else the CT's centre)."""
    picks: list[tuple[np.ndarray, list[str], list[tuple[float, float, float]]]] = []
    for s in _slice_order(result_stations):
        point = station_point(result_stations[s])
        assert point is not None
        p = np.asarray(point, dtype=float)
        near = [pk for pk in picks if abs(pk[0][2] - p[2]) < min_separation_mm]
        if near:
            if result_stations[s].get("malignant"):  # a benign node next to a shown slice adds no slice and no arrow
                near[0][1].append(s)
                near[0][2].append(point)
        elif len(picks) < max_slices:
            picks.append((p, [s], [point]))
    if picks:
        return [SlicePick(tuple(float(v) for v in p), tuple(names), marks=tuple(marks)) for p, names, marks in picks]
    centre = None
    if smap is not None:
        centre = smap.centroid_lps(label_of.get(fallback_station))
        if centre is None:
            centre = smap.centroid_lps(None)
    if centre is None:
        c = corners_lps(ct_grid)
        centre = (c.min(axis=0) + c.max(axis=0)) / 2.0
    return [SlicePick(tuple(float(v) for v in centre), (), fallback=True)]


def axial_field(smap: StationMap | None, points: Sequence[Sequence[float]], ct_grid: Grid, min_fov_mm: float,
                margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Square in-plane box (x, y lo and hi, mm) around the stations and the given points, at least
    `min_fov_mm` wide, kept inside the CT's field of view where it can be."""
    pts = [np.asarray(p, dtype=float)[:2] for p in points]
    if smap is not None:
        lo3, hi3 = smap.box_lps()
        pts += [lo3[:2], hi3[:2]]
    c = corners_lps(ct_grid)[:, :2]
    ct_lo, ct_hi = c.min(axis=0), c.max(axis=0)
    if not pts:
        pts = [ct_lo, ct_hi]
    arr = np.asarray(pts)
    lo, hi = arr.min(axis=0) - margin_mm, arr.max(axis=0) + margin_mm
    side = float(max(min_fov_mm, *(hi - lo)))
    side = min(side, float(max(ct_hi - ct_lo)))
    centre = (lo + hi) / 2.0
    lo, hi = centre - side / 2.0, centre + side / 2.0
    # slide the square back inside the CT's field of view where it sticks out on one side only
    shift = np.where(lo < ct_lo, ct_lo - lo, 0.0) + np.where(hi > ct_hi, ct_hi - hi, 0.0)
    return lo + shift, hi + shift


# --- drawing --------------------------------------------------------------------------------------

def _orientation_marks(ax, left: str, right: str, top: str | None = None, colour: str = "#444444") -> None:
    kw = {"transform": ax.transAxes, "fontsize": 7, "fontweight": "bold", "color": colour, "va": "center"}
    ax.text(0.015, 0.5, left, ha="left", **kw)
    ax.text(0.985, 0.5, right, ha="right", **kw)
    if top:
        ax.text(0.5, 0.985, top, ha="center", **{**kw, "va": "top"})


def draw_mip(ax, mip: Plane, smap: StationMap | None, calls: Mapping[int, bool | None], names: Mapping[int, str],
             style: ReportStyle) -> None:
    """Coronal MIP in inverted grey scale with station outlines coloured by call; positive ones labelled."""
    im = style.images
    vmin, vmax = im["mip_suv_range"]
    extent = mip.extent()
    ax.imshow(mip.image, cmap=im["mip_cmap"], vmin=vmin, vmax=vmax, origin="lower", extent=extent,
              interpolation="bilinear", aspect="equal")
    labels: list[_Label] = []
    if smap is not None:
        present = smap.present()
        # benign first, malignant on top
        for label in sorted(present, key=lambda v: (bool(calls.get(v)), v)):
            malignant = calls.get(label)
            outline = smap.coronal_outline(label)
            width = im["outline_width_malignant"] if malignant else im["outline_width_benign"]
            ax.contour(outline.cols_mm, outline.rows_mm, outline.image.astype(np.float32), levels=[0.5],
                       colors=[style.call_colour(malignant)], linewidths=width, alpha=1.0 if malignant else 0.7)
            if malignant:
                labels.append(_outline_label(outline, names.get(label, str(label)), style.call_colour(True), mip))
    _draw_labels(ax, labels, extent, 8.0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    _orientation_marks(ax, "R", "L")


@dataclass(frozen=True)
class _Label:
    x: float
    row: float
    left: bool  # on the image's left half: text to the left of the outline
    text: str
    colour: str


def _outline_label(outline: Plane, text: str, colour: str, image: Plane) -> _Label:
    """Station name beside the outline, on its outer side (away from the image's vertical midline)."""
    rows, cols = np.nonzero(outline.image)
    x0, x1 = outline.cols_mm[cols.min()], outline.cols_mm[cols.max()]
    mid = (image.cols_mm[0] + image.cols_mm[-1]) / 2.0
    left = (x0 + x1) / 2.0 < mid
    return _Label(float(x0 - 3.0 if left else x1 + 3.0), float(outline.rows_mm[rows].mean()), bool(left), text, colour)


def _mm_per_point(ax, extent: Sequence[float]) -> float:
    """Data millimetres per typographic point on an axes showing `extent` with equal aspect."""
    pos = ax.get_position()
    w_pt = max(pos.width * ax.figure.get_figwidth() * 72.0, 1e-6)
    h_pt = max(pos.height * ax.figure.get_figheight() * 72.0, 1e-6)
    return max(abs(extent[1] - extent[0]) / w_pt, abs(extent[3] - extent[2]) / h_pt)


def _draw_labels(ax, labels: Sequence[_Label], extent: Sequence[float], fontsize: float) -> None:
    """Draw station names; names on the same side are moved apart along the rows so that they
    never overlap (kept inside the image where there is room)."""
    sep = 1.45 * fontsize * _mm_per_point(ax, extent)
    lo, hi = sorted((float(extent[2]), float(extent[3])))
    for side in (True, False):
        group = sorted((lab for lab in labels if lab.left is side), key=lambda lab: lab.row)
        rows = [lab.row for lab in group]
        for i in range(1, len(rows)):
            rows[i] = max(rows[i], rows[i - 1] + sep)
        if rows and rows[-1] > hi - sep / 2:  # slide the column back inside the image
            shift = min(rows[-1] - (hi - sep / 2), max(0.0, rows[0] - (lo + sep / 2)))
            rows = [r - shift for r in rows]
        for lab, r in zip(group, rows):
            ax.text(lab.x, r, lab.text, color=lab.colour, fontsize=fontsize, fontweight="bold", ha="right" if lab.left else "left",
                    va="center", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})


def draw_axial(ax, sl: AxialSlice, calls: Mapping[int, bool | None], names: Mapping[int, str], style: ReportStyle,
               mark_lps: Sequence[Sequence[float]] = (), name_also: Sequence[int] = ()) -> None:
    """CT in the report's window, PET (SUV >= threshold) in a hot colour map on top, station outlines
    (positive ones and those in `name_also` named), arrows at `mark_lps` (x, y in mm)."""
    im = style.images
    lo, hi = style.ct_limits()
    e = sl.ct.extent()
    extent = (e[0], e[1], e[3], e[2])  # origin upper: first row (smallest y = anterior) at the top
    ax.imshow(sl.ct.image, cmap="gray", vmin=lo, vmax=hi, origin="upper", extent=extent, interpolation="bilinear")
    thr = float(im["fusion_suv_threshold"])
    hot = np.ma.masked_less(sl.suv.image, thr)
    ax.imshow(hot, cmap=style.fusion_cmap(), vmin=thr, vmax=float(im["fusion_suv_max"]), alpha=float(im["fusion_alpha"]),
              origin="upper", extent=extent, interpolation="bilinear")
    lab = sl.labels.image
    labels: list[_Label] = []
    for label in sorted({int(v) for v in np.unique(lab) if v}, key=lambda v: (bool(calls.get(v)), v)):
        malignant = calls.get(label)
        outline = _padded(lab == label, sl.labels.cols_mm, sl.labels.rows_mm)
        width = im["outline_width_malignant"] if malignant else im["outline_width_benign"]
        ax.contour(outline.cols_mm, outline.rows_mm, outline.image.astype(np.float32), levels=[0.5],
                   colors=[style.call_colour(malignant)], linewidths=width)
        if malignant or label in name_also:
            labels.append(_outline_label(outline, names.get(label, str(label)), style.call_colour(malignant), sl.labels))
    _draw_labels(ax, labels, extent, 7.5)
    for p in mark_lps:  # arrow from anterior-right towards the point (index node or hottest point), stopping short of it
        ax.annotate("", xy=(float(p[0]), float(p[1])), xytext=(float(p[0]) - 16.0, float(p[1]) - 16.0),
                    arrowprops={"arrowstyle": "-|>", "color": "#00e5ff", "lw": 1.3, "shrinkA": 0, "shrinkB": 4,
                                "mutation_scale": 9})
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    _orientation_marks(ax, "R", "L", top="A", colour="#ffd54f")
