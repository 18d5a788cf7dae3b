"""A label map as NRRD on the CT's own DICOM grid, for viewers that ask for NRRD (OHIF's MONAI Label panel).

The voxels are written in the array order of nstage's grids, ``[k, j, i]`` = slice, row, column, the
slices sorted along the normal of the image plane: the order in which OHIF (cornerstone) stacks the
CT's DICOM slices into a volume, which is the order its MONAI Label panel copies the NRRD's voxels
into the segmentation without reading the header. The header carries the grid in LPS (``space:
left-posterior-superior``, directions, origin), so a viewer that reads it (3D Slicer) places the map
too. ITK's NRRD writer writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstage.geometry import Grid


def save_label_nrrd(labels: np.ndarray, grid: Grid, path: str | Path, dtype: str = "uint8", compress: bool = False) -> None:
    """Write ``labels`` (``[k, j, i]`` on ``grid``) as NRRD (raw, or gzip with ``compress``) in LPS."""
    import itk

    array = np.asarray(labels)
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"label map shape {array.shape} does not match the grid {grid.shape}")
    values = array.astype(np.dtype(dtype), copy=False)
    if not np.array_equal(values, array):
        raise ValueError(f"label values {int(array.min())}..{int(array.max())} do not fit {dtype}")
    image = itk.image_from_array(np.ascontiguousarray(values))  # ITK index (i, j, k) <- array [k, j, i]
    image.SetSpacing([float(s) for s in grid.spacing])
    image.SetOrigin([float(o) for o in grid.origin])
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(grid.direction, dtype=np.float64)))
    itk.imwrite(image, str(path), compression=compress)
