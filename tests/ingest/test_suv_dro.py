"""The SUV manual's digital reference objects (shared/data/suv-dro): SUVbw min / median / max
inside each DRO's mask within 1 % of cases.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nstage.cli import main
from nstage.geometry import load_nifti, resample
from nstage.ingest.study import load_pet_series

DRO_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "suv-dro"
TOLERANCE = 0.01


def _cases() -> list[dict[str, str]]:
    if not (DRO_ROOT / "cases.csv").is_file():
        return []
    with open(DRO_ROOT / "cases.csv", newline="") as f:
        return list(csv.DictReader(f))


CASES = _cases()
pytestmark = pytest.mark.skipif(not CASES, reason=f"SUV reference objects not found at {DRO_ROOT} (shared/data/suv-dro)")


def _series_dir(case: str) -> Path:
    """The folder of the DRO's PET slices (PT/ in the published layout)."""
    pt = DRO_ROOT / case / "PT"
    return pt if pt.is_dir() else DRO_ROOT / case


def _mask(case: str) -> Path:
    found = sorted((DRO_ROOT / case).rglob("*mask*.nii*"))
    assert found, f"{case}: no mask NIfTI"
    return found[0]


@pytest.mark.parametrize("row", CASES, ids=[c["case"] for c in CASES])
def test_dro_statistics_inside_the_mask(row: dict[str, str]) -> None:
    pet = load_pet_series(_series_dir(row["case"]))
    mask, mask_grid = load_nifti(_mask(row["case"]))
    # one orientation: the mask is brought onto the PET grid through both affines (LPS)
    inside = resample(mask.astype(np.float32), mask_grid, pet.grid, order=0) > 0.5
    assert inside.sum() == int((mask > 0).sum()), "mask and PET grids do not overlap voxel for voxel"
    values = pet.array[inside]
    got = {"suv_min": float(values.min()), "suv_median": float(np.median(values)), "suv_max": float(values.max())}
    for key, value in got.items():
        expected = float(row[key])
        assert abs(value / expected - 1.0) <= TOLERANCE, f"{row['case']} ({row['description'].strip()}): {key} {value:.4f}, expected {expected}"


def test_cli_on_a_dro(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[0]["case"]
    out = tmp_path / "dro.nii.gz"
    assert main(["suv", str(_series_dir(case)), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["units"] and summary["suv_type"] == "bw" and isinstance(summary["scale_factor"], (float, list))
    suv, _ = load_nifti(out)
    assert float(suv.max()) == pytest.approx(float(CASES[0]["suv_max"]), rel=TOLERANCE)
