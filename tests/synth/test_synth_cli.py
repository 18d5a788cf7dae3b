"""`nstage synth` as a user runs it: files per contracts.md, valid DICOM, truth consistent with the rules."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from nstage.analysis.nrules import stage
from nstage.geometry import Grid, load_nifti
from nstage.stations import load_stations
from tests.conftest import REPO, SYNTH_SEED, load_truth

CASES = ("case_0000", "case_0001")


def _series(case: Path, modality: str) -> list[pydicom.Dataset]:
    files = sorted((case / "dicom").rglob("*.dcm"))
    out = [pydicom.dcmread(f) for f in files]
    return sorted([d for d in out if d.Modality == modality], key=lambda d: float(d.ImagePositionPatient[2]))


def _ct_grid(slices: list[pydicom.Dataset]) -> Grid:
    """The CT grid as an independent reader sees it in the DICOM headers."""
    first = slices[0]
    dz = float(slices[1].ImagePositionPatient[2]) - float(first.ImagePositionPatient[2])
    row, col = (float(v) for v in first.PixelSpacing)
    return Grid((len(slices), int(first.Rows), int(first.Columns)), (col, row, dz), tuple(float(v) for v in first.ImagePositionPatient))


def test_layout_and_cohort_csv(small_cohort: Path) -> None:
    for name in CASES:
        case = small_cohort / name
        for f in ("truth.json", "truth_stations.nii.gz", "truth_suv.nii.gz", "preview.png"):
            assert (case / f).is_file(), f
    with (small_cohort / "cohort.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == list(CASES)
    assert list(rows[0]) == ["case", "tumour_side", "n_tnm8", "n_tnm9"]
    for r in rows:
        t = load_truth(small_cohort / r["case"])
        assert (r["tumour_side"], r["n_tnm8"], r["n_tnm9"]) == (t["tumour_side"], t["n_stage"]["tnm8"], t["n_stage"]["tnm9"])
    assert not list(small_cohort.glob(".case_*")), "temporary folders left behind"


def test_truth_follows_the_contract_and_the_rules(small_cohort: Path) -> None:
    names = [s.station for s in load_stations()]
    for name in CASES:
        t = load_truth(small_cohort / name)
        assert t["tumour_side"] in ("R", "L")
        assert set(t["stations"]) == set(names)
        positive = [s for s, v in t["stations"].items() if v["malignant"]]
        for rules in ("tnm", "paper-2026"):
            n = stage(positive, t["tumour_side"], rules)
            assert t["n_stage_by_rule_set"][rules] == {"tnm8": n.tnm8, "tnm9": n.tnm9}
        assert t["n_stage"] == t["n_stage_by_rule_set"]["tnm"]
        malignant_nodes = {n["station"] for n in t["nodes"] if n["malignant"]}
        assert malignant_nodes == set(positive)


def test_dicom_series_share_study_and_frame_of_reference(small_cohort: Path) -> None:
    for name in CASES:
        ct, pet = _series(small_cohort / name, "CT"), _series(small_cohort / name, "PT")
        assert len(ct) > 20 and len(pet) > 20
        assert {d.StudyInstanceUID for d in ct + pet} == {ct[0].StudyInstanceUID}
        assert {d.FrameOfReferenceUID for d in ct + pet} == {ct[0].FrameOfReferenceUID}
        assert len({d.SeriesInstanceUID for d in ct}) == 1 and len({d.SeriesInstanceUID for d in pet}) == 1
        assert list(ct[0].ImageType[:2]) == ["ORIGINAL", "PRIMARY"]
        assert "ATTN" in pet[0].CorrectedImage


def test_truth_station_map_lies_on_the_ct_grid(small_cohort: Path) -> None:
    case = small_cohort / CASES[0]
    ct = _series(case, "CT")
    labels, grid = load_nifti(case / "truth_stations.nii.gz")
    expected = _ct_grid(ct)
    assert grid.shape == expected.shape
    assert np.allclose(grid.affine, expected.affine, atol=1e-3)
    present = set(np.unique(labels)) - {0}
    assert present == {s.label for s in load_stations()}
    # stations sit in soft tissue / fat on the CT, not in lung
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ct])
    assert np.median(hu[labels > 0]) > -150
    assert np.mean(hu[labels > 0] < -600) < 0.02


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_finds_no_error(small_cohort: Path) -> None:
    case = small_cohort / CASES[0]
    files = sorted((case / "dicom" / "ct").glob("*.dcm"))[::15] + sorted((case / "dicom" / "pet").glob("*.dcm"))[::15]
    for f in files:
        out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


def test_same_seed_same_pixels(small_cohort: Path, tmp_path: Path) -> None:
    """Re-running case 1 alone (via --first) reproduces its pixel data byte for byte, and every file
    it writes: each DICOM file, the truth maps and truth.json (all but its wall-clock timings)."""
    cmd = [sys.executable, "-m", "nstage.cli", "synth", str(tmp_path), "--cases", "1", "--first", "1", "--seed", str(SYNTH_SEED), "--preset", "small"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    for modality in ("CT", "PT"):
        a = _series(small_cohort / "case_0001", modality)
        b = _series(tmp_path / "case_0001", modality)
        assert [x.PixelData for x in a] == [y.PixelData for y in b]
        assert [x.SOPInstanceUID for x in a] == [y.SOPInstanceUID for y in b]
    again = tmp_path / "case_0001"
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) > 50 and Path("truth.json") in files
    for rel in files:
        first, second = (small_cohort / "case_0001" / rel).read_bytes(), (again / rel).read_bytes()
        if rel.name == "truth.json":  # timings_s, the last key, holds wall-clock seconds
            first, second = first.split(b'"timings_s"')[0], second.split(b'"timings_s"')[0]
            assert first.endswith(b"\n },\n ")
        assert first == second, rel


def test_bad_arguments_give_an_error_line(tmp_path: Path) -> None:
    for args in (["--preset", "huge"], ["--vendor", "acme"], ["--cases", "0"]):
        out = subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(tmp_path / "x"), *args], capture_output=True, text=True, cwd=REPO)
        assert out.returncode != 0
        assert out.stderr.strip().splitlines()[-1].startswith("error:")
        assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
