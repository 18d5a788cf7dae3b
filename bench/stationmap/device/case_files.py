"""The files a device check passes between machines: the torch backend's inputs of one case, and the
displacement field the device returns. NumPy only (the device has PyTorch and NumPy, nothing else)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nstage.geometry import Grid
from nstage.stationmap.registration_torch import TorchSettings

ARRAYS = ("fixed", "moving", "mask")


def inputs_digest(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray) -> str:
    """SHA-256 over the three input arrays (dtype, shape and bytes): the field applies to these inputs only."""
    h = hashlib.sha256()
    for a in (fixed, moving, mask):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_inputs(path: Path, fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, settings: TorchSettings,
                window_hu: tuple[float, float], threads: int, meta: dict[str, Any]) -> str:
    """One case's backend inputs as `path` (.npz) and `path`.json; returns their digest."""
    fixed, moving, mask = np.asarray(fixed, np.float32), np.asarray(moving, np.float32), np.asarray(mask, bool)
    np.savez_compressed(path, fixed=fixed, moving=moving, mask=mask)
    digest = inputs_digest(fixed, moving, mask)
    record = {"grid": {"shape": list(grid.shape), "spacing": list(grid.spacing), "origin": list(grid.origin),
                       "direction": np.asarray(grid.direction, float).reshape(-1).tolist()},
              "torch_settings": asdict(settings), "window_hu": list(window_hu), "threads": threads, "inputs_sha256": digest, **meta}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return digest


def load_inputs(path: Path) -> tuple[np.ndarray, np.ndarray, Grid, np.ndarray, TorchSettings, tuple[float, float], int, dict[str, Any]]:
    """What save_inputs wrote: fixed, moving, grid, mask, torch settings, window, threads and the record."""
    record = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as z:
        fixed, moving, mask = z["fixed"], z["moving"], z["mask"]
    if inputs_digest(fixed, moving, mask) != record["inputs_sha256"]:
        raise ValueError(f"{path}: the arrays do not match the digest in {path.with_suffix('.json').name}")
    g = record["grid"]
    grid = Grid(tuple(g["shape"]), tuple(g["spacing"]), tuple(g["origin"]), np.reshape(g["direction"], (3, 3)))
    settings = TorchSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["torch_settings"].items()})
    return fixed, moving, grid, mask, settings, tuple(record["window_hu"]), int(record["threads"]), record
