"""Elastix run as its programs (`elastix`, `transformix`; Debian's package `elastix`) rather than through ITK's Python
modules (itk-elastix): the same parameter files and result, without loading ITK (about 10 s in a fresh process).

The images go to the programs as MetaImage files in a scratch folder; transformix writes the displacement field
(LPS mm on the fixed grid), read back here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from nstage.geometry import Grid
from nstage.stationmap.metaimage import read_mha, write_mha


@lru_cache(maxsize=1)
def _probe() -> tuple[tuple[str, str], str] | None:
    """The paths of `elastix` and `transformix` and the version `elastix --version` reports, when both are on PATH
    and it runs; else None. Asked once per process."""
    found = shutil.which("elastix"), shutil.which("transformix")
    if found[0] is None or found[1] is None:
        return None
    try:
        out = subprocess.run([found[0], "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+\.\d+(\.\d+)?)", out)
    return (found[0], found[1]), (match.group(1) if match else out.strip())


def programs() -> tuple[str, str] | None:
    """The paths of `elastix` and `transformix` when both are on PATH and run, else None."""
    probe = _probe()
    return None if probe is None else probe[0]


def program_version() -> str | None:
    """The version the `elastix` program reports (e.g. 5.0.1), None without the programs."""
    probe = _probe()
    return None if probe is None else probe[1]


# Debian's elastix 5.0.1 is built without FinalLinearInterpolator; a first-order B-spline interpolator is the same
# interpolation. It only resamples a result image (WriteResultImage is false), never the displacement field.
PROGRAM_OVERRIDES = {"ResampleInterpolator": '"FinalBSplineInterpolator"', "FinalBSplineInterpolationOrder": "1"}


def parameter_file_with(source: Path, target: Path, overrides: dict[str, str]) -> Path:
    """`source` copied to `target` with each parameter of `overrides` set to its value (Elastix text)."""
    if not Path(source).is_file():
        raise FileNotFoundError(f"Elastix parameter file {source} not found")
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not any(re.match(rf"\s*\({re.escape(k)}\s", line) for k in overrides)]
    target.write_text("\n".join(kept + [f"({k} {v})" for k, v in overrides.items()]) + "\n", encoding="utf-8")
    return target


def _run(cmd: list[str], log: Path, what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        text = log.read_text(errors="replace") if log.is_file() else done.stdout + done.stderr
        errors = [line for line in text.splitlines() if "ERROR" in line.upper() or "exception" in line.lower()]
        raise RuntimeError(f"{what} exited with status {done.returncode}: " + (" | ".join(errors[-5:]) or text[-800:]))


def register_with_programs(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray,
                           parameter_files: Sequence[Path], threads: int) -> np.ndarray:
    """Elastix's programs with `parameter_files` (in order); the displacement field ``[k, j, i, 3]`` (mm) on `grid`."""
    found = programs()
    if found is None:
        raise RuntimeError("the elastix and transformix programs are not on PATH (Debian: apt install elastix)")
    elastix, transformix = found
    with tempfile.TemporaryDirectory(prefix="nstage-elastix-") as scratch:
        work = Path(scratch)
        write_mha(work / "fixed.mha", np.asarray(fixed, np.float32), grid)
        write_mha(work / "moving.mha", np.asarray(moving, np.float32), grid)
        write_mha(work / "mask.mha", np.asarray(mask, np.uint8), grid)
        cmd = [elastix, "-f", str(work / "fixed.mha"), "-m", str(work / "moving.mha"), "-fMask", str(work / "mask.mha"),
               "-out", str(work), "-threads", str(max(1, threads))]
        for n, p in enumerate(parameter_files):
            cmd += ["-p", str(parameter_file_with(Path(p), work / f"parameters.{n}.txt", PROGRAM_OVERRIDES))]
        _run(cmd, work / "elastix.log", "elastix")
        transform = work / f"TransformParameters.{len(parameter_files) - 1}.txt"
        _run([transformix, "-def", "all", "-tp", str(transform), "-out", str(work), "-threads", str(max(1, threads))],
             work / "transformix.log", "transformix")
        [field_file] = [p for p in work.glob("deformationField.*") if p.suffix in (".mha", ".mhd")]
        field, field_grid = read_mha(field_file)
    if tuple(field_grid.shape) != tuple(grid.shape) or field.shape[-1:] != (3,):
        raise RuntimeError(f"transformix wrote a field of shape {field.shape} for the grid {grid.shape}")
    return field.astype(np.float64)
