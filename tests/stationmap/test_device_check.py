"""The GPU device check (bench/stationmap/device: prepare here, run.sh on the device, finish here) end to end on
the CPU with one tiny case, as a session without a device leaves it: ready and tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.stationmap.device import finish, prepare
from bench.stationmap.device.case_files import inputs_digest
from nstage.geometry import Grid

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_device_check_runs_on_the_cpu_and_scores_the_torch_field(tmp_path: Path) -> None:
    prep, out = tmp_path / "device", tmp_path / "out"
    assert prepare.main([str(prep), "--preset", "small", "--cases", "1", "--first-seed", "910001", "--torch-iterations", "8,0", "8,4"]) == 0
    (inputs,) = sorted((prep / "inputs").glob("case_*.npz"))
    assert (prep / "reference" / inputs.name).is_file()
    run = subprocess.run(["bash", "bench/stationmap/device/run.sh", str(prep / "inputs"), str(out), str(tmp_path / "no-wheels")], cwd=REPO,
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "python: Python 3" in (out / "environment.txt").read_text()
    device = json.loads((out / "gpu_registration.json").read_text())
    (row,) = device["cases"]
    assert row["device"] == "cpu" and row["first_run_seconds"] > 0 and row["seconds"] > 0 and row["peak_gpu_memory_mib"] is None
    assert finish.main([str(prep), str(out), "--out", str(tmp_path / "gpu.json")]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text())
    s = result["summary"]
    assert s["device"].startswith("cpu") and s["meets_targets"] is False  # no GPU: the GPU target cannot be met
    (case,) = result["cases"]
    assert case["status"] in ("ok", "suspect") and case["stations"]
    assert 0.5 < s["dice_torch_vs_elastix_mean"] <= 1.0  # a few iterations from the same pre-alignment: close to Elastix, not equal
    assert s["mean_station_dice_torch"] is not None and s["mean_station_dice_elastix"] is not None


def test_a_field_is_replayed_only_on_the_inputs_the_device_registered() -> None:
    grid = Grid((4, 5, 6), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    fixed, moving = rng.normal(size=grid.shape).astype(np.float32), rng.normal(size=grid.shape).astype(np.float32)
    mask = np.ones(grid.shape, bool)
    field = rng.normal(size=grid.shape + (3,)).astype(np.float32)
    backend = finish.replaying(field, inputs_digest(fixed, moving, mask))
    assert np.array_equal(backend(fixed, moving, grid, mask, Path("."), None), field.astype(np.float64))
    changed = fixed.copy()
    changed[0, 0, 0] += 1.0
    with pytest.raises(finish.FieldMismatch):
        backend(changed, moving, grid, mask, Path("."), None)
