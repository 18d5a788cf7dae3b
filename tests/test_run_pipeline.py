"""`nstage run` on a synthetic study: result.json holds the contract and its N stage follows from its calls.

The N stage is re-derived here from the station-to-N table of clinical-rules.md section 2,
written out in this file (not read from config/rules), so a wrong rules file or engine shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from nstage.geometry import load_nifti
from tests.conftest import REPO, load_truth

STATIONS = ["1R", "1L", "2R", "2L", "3A", "3P", "4R", "4L", "5", "6", "7", "8", "9", "10R", "10L", "11R", "11L"]
TNM_TABLE = {  # clinical-rules.md section 2, rule set `tnm`
    "R": {"N1": {"10R", "11R"}, "N2": {"2R", "4R", "3A", "3P", "7", "8", "9"}, "N3": {"1R", "1L", "2L", "4L", "5", "6", "10L", "11L"}},
    "L": {"N1": {"10L", "11L"}, "N2": {"2L", "4L", "3A", "3P", "5", "6", "7", "8", "9"}, "N3": {"1R", "1L", "2R", "4R", "10R", "11R"}},
}


def expected_stage(positive: set[str], side: str | None) -> tuple[str, str]:
    """(TNM 8, TNM 9) from the table above."""
    if not positive:
        return "N0", "N0"
    if side is None:
        return "N+ (side unknown)", "N+ (side unknown)"
    t = TNM_TABLE[side]
    if positive & t["N3"]:
        return "N3", "N3"
    n2 = positive & t["N2"]
    if n2:
        return "N2", "N2a" if len(n2) == 1 else "N2b"
    return "N1", "N1"


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_result_holds_the_contract(pipeline_run: tuple[Path, Path]) -> None:
    case, out = pipeline_run
    r = _result(out)
    assert set(r["stations"]) <= set(STATIONS) and len(r["stations"]) >= 15
    for name, s in r["stations"].items():
        assert isinstance(s["malignant"], bool)
        assert 0.0 <= s["probability"] <= 1.0
        assert s["suv_max"] >= s["suv_mean"] > 0 and s["suv_peak"] > 0, name  # the peak's sphere may reach beyond the station
        assert s["volume_ml"] > 0
    assert r["registration"]["status"] in ("ok", "suspect")
    assert r["model"]["name"] and r["model"]["version"] and r["model"]["training_data"]
    assert {"load study", "stations (atlas registration)", "station classifier", "N rules"} <= set(r["timings_s"])
    assert r["tumour_side_source"] in ("auto", "not found")
    assert set(r["baseline"]) == {"suvmax", "blood_pool", "ct_size", "combined"}
    names = sorted(p.name for p in out.iterdir())
    assert "result.json" in names and "stations.nii.gz" in names
    assert not [n for n in names if n.startswith(".")], names


def test_n_stage_follows_from_the_calls_and_side(pipeline_run: tuple[Path, Path]) -> None:
    _, out = pipeline_run
    r = _result(out)
    positive = {s for s, v in r["stations"].items() if v["malignant"]}
    assert (r["n_stage"]["tnm8"], r["n_stage"]["tnm9"]) == expected_stage(positive, r["tumour_side"])
    for name, b in r["baseline"].items():
        calls = {s for s, v in b["stations"].items() if v["malignant"]}
        assert (b["n_stage"]["tnm8"], b["n_stage"]["tnm9"]) == expected_stage(calls, r["tumour_side"]), name


def test_measurements_match_the_generator_truth(pipeline_run: tuple[Path, Path]) -> None:
    case, out = pipeline_run
    r, truth = _result(out), load_truth(case)
    assert r["tumour_side"] == truth["tumour_side"]
    pool = r["blood_pool"]
    assert pool["available"]
    assert abs(pool["suv_mean"] / truth["pet"]["tissue_suv"]["arterial_blood"] - 1) < 0.15
    assert r["baseline"]["blood_pool"]["rule"].startswith("SUV")
    stations, grid = load_nifti(out / "stations.nii.gz")
    true_map, true_grid = load_nifti(case / "truth_stations.nii.gz")
    assert stations.shape == true_map.shape and np.allclose(grid.origin, true_grid.origin, atol=1e-3)
    assert set(np.unique(stations)) - {0} == {i + 1 for i, s in enumerate(STATIONS) if s in r["stations"]}


def test_user_side_and_rule_set_are_used(pipeline_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A side given by the user wins and the paper's table changes station 1 / 5 / 6 categories."""
    case, first = pipeline_run
    auto = _result(first)
    other = "L" if auto["tumour_side"] == "R" else "R"
    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(case / "dicom"), "-o", str(tmp_path / "out"), "-m", str(tmp_path),
           "--tumour-side", other, "--rules", "paper-2026"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = _result(tmp_path / "out")
    assert (r["tumour_side"], r["tumour_side_source"], r["rule_set"]) == (other, "user", "paper-2026")
    ds = pydicom.dcmread(next(p for p in sorted((case / "dicom").rglob("*")) if p.is_file()), stop_before_pixels=True)
    for identifier in (str(ds.PatientName), str(ds.PatientID)):
        assert identifier and identifier not in done.stderr and identifier not in done.stdout, "a patient identifier reached the log"


def test_dicom_outputs_are_new_series_of_the_study_and_validate(pipeline_run: tuple[Path, Path]) -> None:
    """SEG, SR and Encapsulated PDF land in OUT, in the source study, and dciodvfy / dcmdump / dsrdump find no error."""
    from nstage.outputs.validators import validate_file

    case, out = pipeline_run
    source = pydicom.dcmread(next(p for p in sorted((case / "dicom").rglob("*")) if p.is_file()), stop_before_pixels=True)
    objects = {pydicom.dcmread(p, stop_before_pixels=True).Modality: p for p in out.glob("*.dcm")}
    assert set(objects) == {"SEG", "SR", "DOC"}
    series = set()
    for modality, path in objects.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID, modality
        series.add(ds.SeriesInstanceUID)
        for report in validate_file(path, skip=("DicomSRValidator",)):  # pixelmed runs in tests/outputs/test_dicom_outputs.py
            assert report.ok, report.summary()
    assert len(series) == 3 and source.SeriesInstanceUID not in series
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF") and (out / "report.png").read_bytes()[:4] == b"\x89PNG"


NODE_FIELDS = {"centre_lps", "short_axis_mm", "long_axis_mm", "volume_ml", "hu_mean", "suv_max", "suv_peak", "blood_pool_ratio",
               "tumour_ratio", "calcified", "fat_containing", "low_density_centre", "visual_grade"}  # the contract of the node-reading issue


def test_result_holds_the_nodes_of_every_station(pipeline_run: tuple[Path, Path]) -> None:
    case, out = pipeline_run
    r = _result(out)
    truth = load_truth(case)
    with_node = 0
    for name, s in r["stations"].items():
        assert {"index_node", "nodes", "node_candidates"} <= set(s), name
        if s["index_node"] is None:
            assert s["nodes"] == [], name
            continue
        with_node += 1
        assert s["nodes"][0] == s["index_node"] and len(s["nodes"]) <= s["node_candidates"]
        for n in s["nodes"]:
            assert NODE_FIELDS <= set(n), name
            assert len(n["centre_lps"]) == 3 and 0 < n["short_axis_mm"] <= n["long_axis_mm"] and n["volume_ml"] > 0
            assert n["suv_max"] >= n["suv_peak"] * 0.5 and n["visual_grade"] in (1, 2, 3, 4, 5)
            assert n["blood_pool_ratio"] == pytest.approx(n["suv_max"] / r["blood_pool"]["suv_mean"], rel=0.01)
    assert with_node >= 5
    # the largest true node (truth.json) is read within 5 mm of where the generator put it
    biggest = max(truth["nodes"], key=lambda n: n["short_axis_mm"])
    found = [n for s in r["stations"].values() for n in s["nodes"]]
    assert min(np.linalg.norm(np.subtract(n["centre_lps"], biggest["centre_lps"])) for n in found) <= 5.0


def test_the_two_reader_rules_follow_from_the_nodes(pipeline_run: tuple[Path, Path]) -> None:
    _, out = pipeline_run
    r = _result(out)
    size = r["baseline"]["ct_size"]["stations"]
    for name, s in r["stations"].items():
        assert size[name]["malignant"] == any(n["short_axis_mm"] >= 10.0 for n in s["nodes"]), name
    combined = r["baseline"]["combined"]["stations"]
    for name, s in r["stations"].items():
        expect = any(not n["calcified"] and (n["visual_grade"] >= 4 or (n["short_axis_mm"] >= 10.0 and n["visual_grade"] >= 3))
                     for n in s["nodes"])
        assert combined[name]["malignant"] == expect, name
