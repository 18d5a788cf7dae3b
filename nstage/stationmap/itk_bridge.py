"""The boundary to ITK / Elastix: `Grid` arrays <-> `itk.Image`, and Elastix parameter files.

ITK works in LPS physical space like :class:`~nstage.geometry.Grid`, and `itk.GetImageFromArray`
takes ``[k, j, i]`` arrays, so only origin, spacing and direction have to be carried over.
ITK is imported lazily: importing it costs several seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nstage.geometry import Grid


def itk_module() -> Any:
    """The `itk` module (imported on first use)."""
    import itk

    return itk


def to_itk(array: np.ndarray, grid: Grid, dtype: type = np.float32) -> Any:
    """An `itk.Image` holding a ``[k, j, i]`` array on `grid`."""
    itk = itk_module()
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    image = itk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    image.SetOrigin([float(v) for v in grid.origin])
    image.SetSpacing([float(v) for v in grid.spacing])
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(grid.direction, dtype=np.float64)))
    return image


def from_itk(image: Any) -> tuple[np.ndarray, Grid]:
    """The ``[k, j, i]`` array (a copy) and the grid of an `itk.Image` (vector images: ``[k, j, i, c]``)."""
    itk = itk_module()
    array = np.array(itk.GetArrayViewFromImage(image), copy=True)
    shape = tuple(array.shape[:3])
    grid = Grid(
        shape=shape,
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=float),
    )
    return array, grid


def read_parameter_files(paths: Sequence[Path], overrides: dict[str, str] | None = None) -> Any:
    """An `itk.ParameterObject` with one parameter map per Elastix parameter file, in order.

    `overrides` sets parameters in every map (values as Elastix text, e.g. ``{"WriteResultImage": "false"}``).
    """
    itk = itk_module()
    po = itk.ParameterObject.New()
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"Elastix parameter file {p} not found")
        po.AddParameterFile(str(p))
    for key, value in (overrides or {}).items():
        for index in range(po.GetNumberOfParameterMaps()):
            po.SetParameter(index, key, value)
    return po
