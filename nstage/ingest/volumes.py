"""DICOM slices of one series -> a float32 volume on a :class:`~nstage.geometry.Grid`.

Geometry checks, in order (each failure is an ``InputError`` naming the series):

- an enhanced multi-frame object arrives as one instance per frame with the frame's own header
  (:mod:`nstage.ingest.multiframe`) and is checked like single-frame slices; a multi-frame image
  without per-frame functional groups cannot be placed and is refused;
- every slice has the same ImageOrientationPatient (cosines within ``ORIENTATION_TOL``), Rows,
  Columns and PixelSpacing (within ``PIXEL_SPACING_RTOL``);
- slices are sorted by their position along the slice normal (row x column cosines);
- duplicated positions (closer than ``DUPLICATE_TOL_MM``): a slice whose pixels equal those of
  the other one is dropped (repair, logged); two different images at one position are an error;
- slice spacing is uniform: every gap is within ``max(SPACING_ATOL_MM, SPACING_RTOL x median)``
  of the median gap. A gap of about two or more median gaps is reported as missing slice(s), any
  other irregular gap as irregular spacing; both are errors (interpolating a missing slice
  would invent data);
- gantry tilt: slice positions that step sideways (not along the normal) give a sheared stack.
  When the positions lie on one straight line this is repaired by shifting each slice in plane
  (linear interpolation) onto an orthogonal grid, and logged; scattered positions are an error.
  A shear below ``TILT_TOL_PIXELS`` over the whole stack is ignored.

Pixels are ``stored x RescaleSlope + RescaleIntercept`` per slice, float32. CT pixels equal to
PixelPaddingValue become air (-1024 HU), logged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from nstage.errors import InputError
from nstage.geometry import Grid, dicom_direction, grid_from_dicom
from nstage.ingest.dicom_index import Instance, SeriesEntry
from nstage.ingest.dicom_values import BadValue, number, numbers, text

log = logging.getLogger("nstage.ingest.volumes")

ORIENTATION_TOL = 1e-3  # largest difference between two slices' direction cosines
PIXEL_SPACING_RTOL = 1e-3
DUPLICATE_TOL_MM = 0.01  # two slices closer than this along the normal share one position
SPACING_RTOL = 0.01  # a gap may differ from the median gap by 1 % ...
SPACING_ATOL_MM = 0.01  # ... or by 0.01 mm, whichever is larger
ALIGNMENT_TOL_MM = 0.05  # in-plane scatter of slice origins around their straight line
TILT_TOL_PIXELS = 0.1  # total sideways drift over the stack below which a tilt is ignored
CT_AIR_HU = -1024.0


@dataclass(frozen=True)
class Volume:
    """A 3-D image in LPS: ``array`` float32 ``[k, j, i]`` on ``grid``, and where it came from."""

    array: np.ndarray
    grid: Grid
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    description: str
    files: tuple[Path, ...] = field(default=(), kw_only=True)  # the instances' files, in slice order (k)


@dataclass(frozen=True)
class SliceStack:
    """The instances of one series sorted along the slice normal, and the grid they fill.

    ``shift_px[k]`` is the in-plane (row, column) shift in pixels that puts slice ``k`` of a
    tilted stack onto ``grid`` (zeros when there is no tilt)."""

    label: str
    instances: tuple[Instance, ...]
    grid: Grid
    shift_px: np.ndarray
    repairs: tuple[str, ...]

    @property
    def headers(self) -> tuple[pydicom.Dataset, ...]:
        return tuple(i.header for i in self.instances)


@dataclass(frozen=True)
class SliceSummary:
    """Coarse facts about a series' slices, for choosing between series (never raises)."""

    n_slices: int
    spacing_mm: float
    extent_mm: float
    z_range_mm: tuple[float, float]  # LPS z (head is +z) of the lowest and highest slice centre


def _fail(series: SeriesEntry, problem: str, action: str) -> InputError:
    return InputError(f"{series.label}: {problem}; {action}")


def _plane(series: SeriesEntry) -> tuple[np.ndarray, tuple[float, float], int, int]:
    """Common direction, PixelSpacing, Rows and Columns of all slices (checked)."""
    redo = "export the series again as one consistent axial stack"
    ref: tuple[np.ndarray, tuple[float, ...], int, int] | None = None
    for inst in series.instances:
        h = inst.header
        try:
            frames = number(h, "NumberOfFrames")
            iop = numbers(h, "ImageOrientationPatient", 6)
            spacing = numbers(h, "PixelSpacing", 2)
            rows, cols = number(h, "Rows"), number(h, "Columns")
        except BadValue as e:
            raise _fail(series, f"{inst.name}: {e}", redo) from None
        if frames is not None and frames > 1:
            raise _fail(series, f"multi-frame image without per-frame functional groups ({int(frames)} frames in {inst.name}): "
                        "its frames cannot be placed in patient space", "export it as single-frame slices or as an Enhanced CT / PET object")
        if iop is None or spacing is None or number(h, "ImagePositionPatient") is None:
            missing = [k for k, v in (("ImageOrientationPatient (0020,0037)", iop), ("PixelSpacing (0028,0030)", spacing),
                                      ("ImagePositionPatient (0020,0032)", number(h, "ImagePositionPatient"))) if v is None]
            raise _fail(series, f"{inst.name} lacks {', '.join(missing)}", "the series cannot be placed in patient space")
        if min(spacing) <= 0 or not rows or not cols:
            raise _fail(series, f"{inst.name}: PixelSpacing {spacing}, Rows {rows}, Columns {cols}", redo)
        try:
            direction = dicom_direction(iop)
        except ValueError as e:
            raise _fail(series, str(e), redo) from None
        if ref is None:
            ref = (direction, spacing, int(rows), int(cols))
            continue
        if np.abs(direction[:, :2] - ref[0][:, :2]).max() > ORIENTATION_TOL:
            raise _fail(series, "slices have different ImageOrientationPatient (a localizer or reformat mixed in?)", redo)
        if (int(rows), int(cols)) != ref[2:]:
            raise _fail(series, f"slices have different sizes ({ref[2]}x{ref[3]} and {int(rows)}x{int(cols)})", redo)
        if not np.allclose(spacing, ref[1], rtol=PIXEL_SPACING_RTOL, atol=0):
            raise _fail(series, f"slices have different PixelSpacing ({list(ref[1])} and {list(spacing)})", redo)
    assert ref is not None
    return ref[0], (float(ref[1][0]), float(ref[1][1])), ref[2], ref[3]


def _positions(series: SeriesEntry) -> np.ndarray:
    out = []
    for inst in series.instances:
        try:
            out.append(numbers(inst.header, "ImagePositionPatient", 3))
        except BadValue as e:
            raise _fail(series, f"{inst.name}: {e}", "the series cannot be placed in patient space") from None
    return np.asarray(out, dtype=float)


def _instance_number(inst: Instance) -> float:
    """InstanceNumber for tie-breaking (0 when absent or unreadable)."""
    try:
        return number(inst.header, "InstanceNumber") or 0.0
    except BadValue:
        return 0.0


def _pixels_equal(a: Instance, b: Instance) -> bool:
    try:
        return bool(np.array_equal(_FrameReader().pixels(a), _FrameReader().pixels(b)))
    except Exception:
        return False


class _FrameReader:
    """Decoded pixels of one slice, the file decoded once for all the frames read in a row."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._ds: pydicom.Dataset | None = None
        self._pixels: np.ndarray | None = None

    def dataset(self, inst: Instance) -> pydicom.Dataset:
        if inst.path != self._path:
            self._path, self._ds, self._pixels = inst.path, pydicom.dcmread(inst.path), None
        assert self._ds is not None
        return self._ds

    def pixels(self, inst: Instance) -> np.ndarray:
        ds = self.dataset(inst)
        if self._pixels is None:
            self._pixels = ds.pixel_array
        return self._pixels if inst.frame is None else self._pixels[inst.frame]


def _drop_duplicates(series: SeriesEntry, order: list[int], dist: np.ndarray) -> tuple[list[int], list[str]]:
    """Indices (sorted by position) with pixel-identical duplicates removed; error otherwise."""
    keep: list[int] = []
    repairs: list[str] = []
    for idx in order:
        if keep and abs(dist[idx] - dist[keep[-1]]) < DUPLICATE_TOL_MM:
            a, b = series.instances[keep[-1]], series.instances[idx]
            if not _pixels_equal(a, b):
                raise _fail(series, f"two different images at the same position ({dist[idx]:.2f} mm along the normal: {a.name}, {b.name})",
                            "the folder holds more than one acquisition in this series; export one")
            repairs.append(f"dropped {b.name}: same position and pixels as {a.name}")
            continue
        keep.append(idx)
    return keep, repairs


def _check_spacing(series: SeriesEntry, d: np.ndarray) -> float:
    """Mean slice spacing after checking that the gaps are uniform."""
    gaps = np.diff(d)
    med = float(np.median(gaps))
    tol = max(SPACING_ATOL_MM, SPACING_RTOL * med)
    bad = np.flatnonzero(np.abs(gaps - med) > tol)
    if bad.size:
        k = int(bad[0])
        ratio = gaps[k] / med
        if ratio > 1.5 and abs(ratio - round(ratio)) * med <= tol * max(1.0, round(ratio)):
            n_missing = int(round(ratio)) - 1
            raise _fail(series, f"{n_missing} missing slice(s) between {d[k]:.2f} and {d[k + 1]:.2f} mm along the slice normal "
                        f"(gap {gaps[k]:.2f} mm, spacing {med:.2f} mm; {bad.size} gap(s) in all)",
                        "export the complete series (a missing slice is not interpolated)")
        raise _fail(series, f"irregular slice spacing: gap {gaps[k]:.3f} mm at {d[k]:.2f} mm where the others are {med:.3f} mm "
                    f"(tolerance {tol:.3f} mm)", "export a series with uniform slice spacing")
    return float((d[-1] - d[0]) / (len(d) - 1))


def _tilt_shift(series: SeriesEntry, pos: np.ndarray, direction: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, str | None]:
    """Per-slice in-plane shift (pixels, (row, column)) undoing a gantry tilt; None note if none."""
    n = len(pos)
    k = np.arange(n, dtype=float)
    step = (pos[-1] - pos[0]) / (n - 1)
    fitted = pos[0] + k[:, None] * step
    inplane_residual = (pos - fitted) - ((pos - fitted) @ direction[:, 2])[:, None] * direction[:, 2][None, :]
    if np.linalg.norm(inplane_residual, axis=1).max() > ALIGNMENT_TOL_MM:
        raise _fail(series, "slice origins (ImagePositionPatient) do not lie on one line", "export the series again as one consistent stack")
    along_i, along_j = float(step @ direction[:, 0]), float(step @ direction[:, 1])
    row_spacing, col_spacing = spacing
    drift_px = math.hypot(along_i / col_spacing, along_j / row_spacing) * (n - 1)
    if drift_px < TILT_TOL_PIXELS:
        return np.zeros((n, 2)), None
    angle = math.degrees(math.atan2(math.hypot(along_i, along_j), float(step @ direction[:, 2])))
    shift = np.stack([k * along_j / row_spacing, k * along_i / col_spacing], axis=1)
    return shift, f"gantry tilt of {angle:.2f} deg corrected by shifting each slice in plane (linear interpolation)"


def stack_series(series: SeriesEntry) -> SliceStack:
    """Check the geometry of ``series`` and sort its slices; raises InputError naming the problem."""
    if not series.instances:
        raise InputError(f"{series.label}: no image files")
    direction, spacing, rows, cols = _plane(series)
    pos = _positions(series)
    dist = pos @ direction[:, 2]
    order = sorted(range(len(pos)), key=lambda i: (dist[i], _instance_number(series.instances[i])))
    keep, repairs = _drop_duplicates(series, order, dist)
    if len(keep) < 2:
        raise _fail(series, f"only {len(keep)} slice", "a volume needs at least two slices")
    pos, dist = pos[keep], dist[keep]
    dz = _check_spacing(series, dist)
    shift, tilt_note = _tilt_shift(series, pos, direction, spacing)
    if tilt_note:
        repairs.append(tilt_note)
    iop = np.concatenate([direction[:, 0], direction[:, 1]])
    grid = grid_from_dicom(iop, pos[0], spacing, dz, (len(keep), rows, cols))
    for note in repairs:
        log.warning("%s: %s", series.label, note)
    return SliceStack(series.label, tuple(series.instances[i] for i in keep), grid, shift, tuple(repairs))


def read_rescaled(stack: SliceStack) -> np.ndarray:
    """Pixel data of ``stack`` as float32 ``stored x RescaleSlope + RescaleIntercept`` per slice."""
    from scipy import ndimage

    nz, ny, nx = stack.grid.shape
    out = np.empty((nz, ny, nx), dtype=np.float32)
    modality = (text(stack.instances[0].header, "Modality") or "").upper()
    fill = CT_AIR_HU if modality == "CT" else 0.0
    padded = 0
    reader = _FrameReader()
    for k, inst in enumerate(stack.instances):
        try:
            ds = reader.dataset(inst)
            pixels = reader.pixels(inst)
        except Exception as e:
            raise InputError(f"{stack.label}: cannot read the pixel data of {inst.name} ({type(e).__name__}: {str(e)[:160]}); "
                             "the file may be truncated or use an unsupported compression: export the series again") from None
        if pixels.shape != (ny, nx):
            raise InputError(f"{stack.label}: {inst.name} holds pixels of shape {pixels.shape}, expected {(ny, nx)} (single-frame greyscale)")
        try:
            slope = number(inst.header, "RescaleSlope")
            intercept = number(inst.header, "RescaleIntercept")
        except BadValue as e:
            raise InputError(f"{stack.label}: {inst.name}: {e}") from None
        slope = 1.0 if slope is None else slope
        plane = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept or 0.0)
        if modality == "CT" and "PixelPaddingValue" in ds:
            pad = pixels == ds.PixelPaddingValue
            padded += int(pad.sum())
            plane[pad] = CT_AIR_HU
        if np.any(stack.shift_px[k]):
            plane = ndimage.shift(plane, stack.shift_px[k], order=1, mode="constant", cval=fill)
        out[k] = plane
    if padded:
        log.info("%s: %d padding voxels (PixelPaddingValue) set to air", stack.label, padded)
    return out


def load_volume(series: SeriesEntry) -> Volume:
    """The checked, rescaled float32 volume of ``series``."""
    stack = stack_series(series)
    return Volume(
        array=read_rescaled(stack),
        grid=stack.grid,
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        frame_of_reference_uid=series.frame_of_reference_uid or "",
        description=series.description,
        files=tuple(i.path for i in stack.instances),
    )


def slice_summary(series: SeriesEntry) -> SliceSummary | None:
    """Spacing and axial coverage of ``series`` from its headers; None when they don't add up."""
    try:
        iop = numbers(series.first, "ImageOrientationPatient", 6)
        if iop is None:
            return None
        normal = dicom_direction(iop)[:, 2]
        pos = np.asarray([numbers(i.header, "ImagePositionPatient", 3) for i in series.instances], dtype=float)
    except (BadValue, ValueError, TypeError):
        return None
    d = np.unique(np.round(pos @ normal, 3))
    if d.size < 2:
        return None
    z = pos[:, 2]
    return SliceSummary(int(d.size), float(np.median(np.diff(d))), float(d[-1] - d[0]), (float(z.min()), float(z.max())))
