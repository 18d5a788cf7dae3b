"""MetaImage files (`.mha`, `.mhd` + raw data), the format Elastix's programs read and write, without ITK.

Loading ITK's Python modules takes about 10 s in a fresh process; the Elastix programs need only files, so the
images go to them as MetaImage. LPS physical space as in :class:`~nstage.geometry.Grid`; arrays ``[k, j, i]``
(vector images ``[k, j, i, c]``). `TransformMatrix` holds the direction's columns one after another, as ITK's
MetaImageIO writes and reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstage.geometry import Grid

_TYPES = {"MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
          "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64}
_NAMES = {np.dtype(v): k for k, v in _TYPES.items()}


def write_mha(path: Path, array: np.ndarray, grid: Grid) -> Path:
    """One `.mha` file (header and data together) holding a ``[k, j, i]`` array on `grid`."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _NAMES:
        raise ValueError(f"MetaImage: no element type for {array.dtype}")
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    direction = np.asarray(grid.direction, dtype=float)
    header = [
        "ObjectType = Image", "NDims = 3", "BinaryData = True", "BinaryDataByteOrderMSB = False", "CompressedData = False",
        "TransformMatrix = " + " ".join(repr(float(v)) for v in direction.T.ravel()),
        "Offset = " + " ".join(repr(float(v)) for v in grid.origin),
        "ElementSpacing = " + " ".join(repr(float(v)) for v in grid.spacing),
        "DimSize = " + " ".join(str(n) for n in array.shape[::-1]),
        f"ElementType = {_NAMES[array.dtype]}", "ElementDataFile = LOCAL",
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return Path(path)


def read_mha(path: Path) -> tuple[np.ndarray, Grid]:
    """The array (``[k, j, i]``, vector images ``[k, j, i, c]``) and grid of a 3-D MetaImage (`.mha` or `.mhd`)."""
    raw = Path(path).read_bytes()
    fields: dict[str, str] = {}
    start = 0
    while True:
        end = raw.index(b"\n", start)
        key, _, value = raw[start:end].decode("ascii").partition("=")
        fields[key.strip()] = value.strip()
        start = end + 1
        if key.strip() == "ElementDataFile":
            break
    if int(fields.get("NDims", "0")) != 3:
        raise ValueError(f"{path}: a 3-D MetaImage is expected (NDims = {fields.get('NDims')})")
    if fields.get("CompressedData", "False") == "True":
        raise ValueError(f"{path}: compressed MetaImage data is not read here")
    dims = [int(v) for v in fields["DimSize"].split()]
    channels = int(fields.get("ElementNumberOfChannels", "1"))
    dtype = np.dtype(_TYPES[fields["ElementType"]]).newbyteorder(">" if fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB")) == "True" else "<")
    source = fields["ElementDataFile"]
    data = raw[start:] if source == "LOCAL" else (Path(path).parent / source).read_bytes()
    count = int(np.prod(dims)) * channels
    array = np.frombuffer(data, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    shape = tuple(dims[::-1]) + ((channels,) if channels > 1 else ())
    matrix = [float(v) for v in fields.get("TransformMatrix", "1 0 0 0 1 0 0 0 1").split()]
    grid = Grid(shape=tuple(dims[::-1]), spacing=tuple(float(v) for v in fields["ElementSpacing"].split()),
                origin=tuple(float(v) for v in fields.get("Offset", fields.get("Position", "0 0 0")).split()),
                direction=np.array(matrix, dtype=float).reshape(3, 3).T)
    return array.reshape(shape), grid
