"""The device side of the GPU check: the torch registration backend on each prepared case, timed.

    python -m bench.stationmap.device.gpu_registration INPUTS OUT

INPUTS holds `case_*.npz` / `.json` from bench.stationmap.device.prepare. For each case the backend runs with the
case's settings (device `auto`: CUDA when torch sees a GPU, else the CPU, as in a CPU test); the first
case runs twice, so that its first time includes CUDA's start-up and the second does not. Writes
OUT/<case>_field.npz (the displacement field, float32) and OUT/gpu_registration.json (device,
libraries, seconds and peak GPU memory per case). Imports NumPy, PyTorch, hf-deepali and the two
nstage modules the backend needs, nothing else.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.stationmap.device.case_files import load_inputs
from nstage.stationmap.registration_torch import library_versions, run_torch, torch_device


def _device_record() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
                           **library_versions(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return out


def _timed(fixed: np.ndarray, moving: np.ndarray, grid: Any, mask: np.ndarray, settings: Any, window: tuple[float, float],
           threads: int) -> tuple[np.ndarray, float, float | None]:
    """One registration: (field, seconds, peak GPU memory in MiB or None on the CPU)."""
    import torch

    cuda = torch_device(settings.device) == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    field = run_torch(fixed, moving, grid, mask, settings, window, threads)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return field, seconds, peak


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.stationmap.device.gpu_registration INPUTS OUT", file=sys.stderr)
        return 2
    inputs, out = Path(args[0]), Path(args[1])
    cases = sorted(inputs.glob("case_*.npz"))
    if not cases:
        print(f"error: no case_*.npz in {inputs}: run `python -m bench.stationmap.device.prepare` on the CPU side first", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": _device_record(), "cases": []}
    for n, path in enumerate(cases):
        fixed, moving, grid, mask, settings, window, threads, meta = load_inputs(path)
        row: dict[str, Any] = {"case": path.stem, "seed": meta.get("seed"), "grid_shape": list(grid.shape),
                               "inputs_sha256": meta["inputs_sha256"], "device": torch_device(settings.device)}
        if n == 0:  # the first run pays for CUDA's start-up and kernel loading
            _, row["first_run_seconds"], _ = _timed(fixed, moving, grid, mask, settings, window, threads)
        field, row["seconds"], row["peak_gpu_memory_mib"] = _timed(fixed, moving, grid, mask, settings, window, threads)
        np.savez_compressed(out / f"{path.stem}_field.npz", field=field.astype(np.float32))
        record["cases"].append(row)
        print(f"{path.stem}: {row['seconds']:.2f} s on {row['device']}"
              + (f", peak {row['peak_gpu_memory_mib']:.0f} MiB" if row["peak_gpu_memory_mib"] is not None else ""), flush=True)
    (out / "gpu_registration.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
