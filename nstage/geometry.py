"""Image geometry: voxel grids in DICOM patient coordinates (LPS) and their NIfTI (RAS) form.

Convention, used everywhere in the package:
- arrays are indexed ``[k, j, i]`` = ``[slice, row, column]`` (z, y, x);
- a :class:`Grid` maps index ``(i, j, k)`` to LPS millimetres:
  ``p = origin + direction @ (spacing * (i, j, k))``;
- ``direction`` columns are the LPS unit vectors of the column (i), row (j) and slice (k) axes,
  so DICOM ImageOrientationPatient = ``direction[:, 0]`` + ``direction[:, 1]`` and
  PixelSpacing = ``(spacing[1], spacing[0])``.
NIfTI files store RAS affines over ``(i, j, k)`` arrays; :func:`save_nifti` and
:func:`load_nifti` are the only place where LPS <-> RAS and ``[k,j,i]`` <-> ``[i,j,k]`` flip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid in LPS patient space."""

    shape: tuple[int, int, int]  # (nz, ny, nx): array order
    spacing: tuple[float, float, float]  # (sx, sy, sz) mm along columns, rows, slices
    origin: tuple[float, float, float]  # LPS mm of the centre of voxel [0, 0, 0]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    _to_index: np.ndarray = field(init=False, repr=False, compare=False)  # inverse of the index-to-LPS matrix

    def __post_init__(self) -> None:
        d = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise ValueError("Grid direction must be orthonormal")
        object.__setattr__(self, "direction", d)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(s) for s in self.origin))
        object.__setattr__(self, "_to_index", np.linalg.inv(d * np.asarray(self.spacing)[None, :]).T)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix from (i, j, k, 1) to LPS millimetres."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """(..., 3) voxel indices (i, j, k) to (..., 3) LPS points."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction * np.asarray(self.spacing)[None, :]).T + np.asarray(self.origin)

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) LPS points to continuous (..., 3) voxel indices (i, j, k)."""
        return (np.asarray(points, dtype=float) - np.asarray(self.origin)) @ self._to_index

    def axis_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D LPS coordinates of columns, rows and slices (axis-aligned grids only)."""
        if not np.allclose(self.direction, np.eye(3)):
            raise ValueError("axis_coordinates needs an axis-aligned (identity direction) grid")
        nz, ny, nx = self.shape
        sx, sy, sz = self.spacing
        ox, oy, oz = self.origin
        return ox + sx * np.arange(nx), oy + sy * np.arange(ny), oz + sz * np.arange(nz)

    def slice_positions(self) -> np.ndarray:
        """(nz, 3) LPS ImagePositionPatient of every slice."""
        k = np.arange(self.shape[0])
        ijk = np.stack([np.zeros_like(k), np.zeros_like(k), k], axis=1)
        return self.index_to_lps(ijk)

    def extent_mm(self) -> np.ndarray:
        """(3,) physical size along columns, rows and slices in mm."""
        return np.asarray(self.spacing) * np.asarray(self.shape[::-1])

    @classmethod
    def covering(cls, lo: np.ndarray, hi: np.ndarray, spacing: tuple[float, float, float]) -> "Grid":
        """Axis-aligned grid with the given spacing whose voxel centres cover the box [lo, hi]."""
        lo, hi, sp = np.asarray(lo, float), np.asarray(hi, float), np.asarray(spacing, float)
        n = np.maximum(1, np.ceil((hi - lo) / sp).astype(int) + 1)
        return cls(shape=(int(n[2]), int(n[1]), int(n[0])), spacing=tuple(sp), origin=tuple(lo))


def sub_grid(grid: Grid, box: tuple[slice, slice, slice]) -> Grid:
    """The grid of a ``[k, j, i]`` box of `grid` (same spacing and direction, origin at the box's first voxel)."""
    start = np.array([box[2].start, box[1].start, box[0].start])
    return Grid(tuple(s.stop - s.start for s in box), grid.spacing, tuple(grid.index_to_lps(start)), grid.direction)


def mask_box(mask: np.ndarray, pad: tuple[int, ...] | list[int]) -> tuple[slice, ...] | None:
    """The box of a mask's True voxels grown by `pad` voxels per axis (array order), clipped to the array; None when
    the mask is empty."""
    from scipy import ndimage

    found = ndimage.find_objects(np.asarray(mask).astype(np.uint8))
    if not found or found[0] is None:
        return None
    return tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(found[0], pad, mask.shape))


def save_nifti(array: np.ndarray, grid: Grid, path: str | Path) -> None:
    """Write a ``[k, j, i]`` array on ``grid`` as NIfTI (RAS affine, ``[i, j, k]`` data)."""
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    import nibabel as nib  # here, not at the top: the torch registration backend imports this module where only PyTorch is

    # the [i, j, k] view of a C-ordered [k, j, i] array is Fortran-ordered, as NIfTI stores it: written without a copy
    img = nib.Nifti1Image(np.transpose(array, (2, 1, 0)), LPS_TO_RAS @ grid.affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    nib.save(img, str(path))


def load_nifti(path: str | Path) -> tuple[np.ndarray, Grid]:
    """Read a NIfTI file into a ``[k, j, i]`` array and its LPS :class:`Grid`."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D image, got shape {data.shape}")
    a = LPS_TO_RAS @ img.affine
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    grid = Grid(
        shape=(data.shape[2], data.shape[1], data.shape[0]),
        spacing=tuple(spacing),
        origin=tuple(a[:3, 3]),
        direction=a[:3, :3] / spacing[None, :],
    )
    return np.transpose(data, (2, 1, 0)), grid


def resample(array: np.ndarray, source: Grid, target: Grid, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """Sample a ``[k, j, i]`` array on `source` at the voxel centres of `target` (physical space).

    order 0 = nearest neighbour (labels), 1 = trilinear. Outside the source: `fill`.
    """
    from scipy import ndimage

    # index_target -> LPS -> index_source is one affine map: apply it slice by slice to save memory
    m = np.linalg.inv(source.affine) @ target.affine  # (i, j, k, 1)_target -> (i, j, k, 1)_source
    # ndimage works in [k, j, i] order: permute the matrix accordingly
    perm = [2, 1, 0]
    mat = m[np.ix_(perm, perm)]
    offset = m[perm, 3]
    out = ndimage.affine_transform(
        np.asarray(array), mat, offset=offset, output_shape=target.shape, order=order, mode="constant", cval=fill,
        output=np.result_type(array.dtype, np.float32) if order > 0 else array.dtype,
    )
    return out


def corners_lps(grid: Grid) -> np.ndarray:
    """(8, 3) LPS positions of the centres of the grid's corner voxels."""
    nz, ny, nx = grid.shape
    ijk = np.array([[i, j, k] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)], dtype=float)
    return grid.index_to_lps(ijk)


def downsample_mean(array: np.ndarray, grid: Grid, factors: tuple[int, int, int]) -> tuple[np.ndarray, Grid]:
    """Average blocks of ``factors`` = (fk, fj, fi) voxels of a ``[k, j, i]`` array; return it and its grid.

    Trailing voxels that do not fill a whole block are dropped. The new voxel centres are the
    block centres, so the result stays in the same physical place.
    """
    fk, fj, fi = (max(1, int(f)) for f in factors)
    if (fk, fj, fi) == (1, 1, 1):
        return np.asarray(array, dtype=np.float32), grid
    nz, ny, nx = (s // f for s, f in zip(array.shape, (fk, fj, fi)))
    if min(nz, ny, nx) < 1:
        raise ValueError(f"array {array.shape} is smaller than one block {factors}")
    a = np.asarray(array[: nz * fk, : ny * fj, : nx * fi], dtype=np.float32)
    a = a.reshape(nz, fk, ny, fj, nx, fi).mean(axis=(1, 3, 5), dtype=np.float32)
    step = np.array([fi, fj, fk], dtype=float)
    origin = grid.index_to_lps((step - 1.0) / 2.0)
    spacing = tuple(np.asarray(grid.spacing) * step)
    return a, Grid(shape=(nz, ny, nx), spacing=spacing, origin=tuple(origin), direction=grid.direction)


def resample_through(array: np.ndarray, source: Grid, target: Grid, lps_map: np.ndarray, order: int = 1,
                     fill: float = 0.0) -> np.ndarray:
    """Like :func:`resample`, but the target point p is looked up in the source at ``lps_map @ (p, 1)``.

    `lps_map` is a 4x4 affine map from target LPS millimetres to source LPS millimetres.
    """
    from scipy import ndimage

    m = np.linalg.inv(source.affine) @ np.asarray(lps_map, dtype=float) @ target.affine
    perm = [2, 1, 0]
    return ndimage.affine_transform(
        np.asarray(array), m[np.ix_(perm, perm)], offset=m[perm, 3], output_shape=target.shape, order=order,
        mode="constant", cval=fill, output=np.result_type(array.dtype, np.float32) if order > 0 else array.dtype,
    )


# --- DICOM image plane attributes -> Grid (the one place that reads IOP / IPP / PixelSpacing) ---

ORIENTATION_ATOL = 1e-3  # largest deviation from unit length / orthogonality accepted in IOP cosines


def dicom_direction(image_orientation: npt.ArrayLike) -> np.ndarray:
    """3x3 LPS direction (columns: row direction i, column direction j, slice normal k) from
    ImageOrientationPatient, re-orthonormalised; ValueError when the cosines are not orthonormal
    within ``ORIENTATION_ATOL``."""
    iop = np.asarray(image_orientation, dtype=float).reshape(-1)
    if iop.size != 6 or not np.all(np.isfinite(iop)):
        raise ValueError(f"ImageOrientationPatient needs 6 finite numbers, got {list(iop)}")
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > ORIENTATION_ATOL or abs(np.linalg.norm(col) - 1) > ORIENTATION_ATOL:
        raise ValueError(f"ImageOrientationPatient cosines are not unit vectors: {list(iop)}")
    if abs(float(row @ col)) > ORIENTATION_ATOL:
        raise ValueError(f"ImageOrientationPatient row and column cosines are not orthogonal: {list(iop)}")
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return np.stack([row, col, np.cross(row, col)], axis=1)


def grid_from_dicom(
    image_orientation: npt.ArrayLike,
    first_position: npt.ArrayLike,
    pixel_spacing: npt.ArrayLike,
    slice_spacing: float,
    shape: tuple[int, int, int],
) -> Grid:
    """Grid of a stack of parallel slices sorted along the slice normal.

    ``first_position`` is ImagePositionPatient of slice k=0, ``pixel_spacing`` the DICOM
    PixelSpacing (row spacing, column spacing), ``slice_spacing`` the distance between slice
    centres along the normal (positive), ``shape`` (nz, rows, columns)."""
    direction = dicom_direction(image_orientation)
    row_spacing, col_spacing = np.asarray(pixel_spacing, dtype=float).reshape(2)
    x, y, z = np.asarray(first_position, dtype=float).reshape(3)
    return Grid(
        shape=shape,
        spacing=(float(col_spacing), float(row_spacing), float(slice_spacing)),
        origin=(float(x), float(y), float(z)),
        direction=direction,
    )
