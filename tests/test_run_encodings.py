"""`nstage run` on the study as hospitals send it gives the uncompressed study's decisions.

- JPEG Lossless SV1 (dcmtk's `dcmcjpeg +e1`, the syntax most PACS store and forward, and the one
  a first user's study failed on);
- a study whose only PET is a workstation's SUV export (DERIVED\\SECONDARY, Units GML).

Every other transfer syntax and the enhanced objects are shown to load into identical volumes in
tests/ingest/test_encodings.py (and through the SDK loader in tests/test_app.py), and the app runs the
whole pipeline on a compressed enhanced study in tests/test_app.py.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.encodings import derived_suv_pet, reencode_study


def decisions(result: dict) -> dict:
    """What a study's result decides: N stage, side, every station's call and the baselines' N stage."""
    return {
        "n_stage": result["n_stage"],
        "tumour_side": result["tumour_side"],
        "calls": {s: v["malignant"] for s, v in result["stations"].items()},
        "baseline": {k: v.get("n_stage") for k, v in result["baseline"].items()},
    }


def _run(study: Path, out: Path, models: Path) -> subprocess.CompletedProcess:
    def small_stack() -> None:  # a user's default 8 MB stack: `nstage run` is no Holoscan process and says nothing of it
        resource.setrlimit(resource.RLIMIT_STACK, (8 * 1024 * 1024, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(study), "-o", str(out), "-m", str(models)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, preexec_fn=small_stack)


def test_jpeg_lossless_study_gives_the_uncompressed_decisions(shipped_model_run: tuple[Path, Path], tmp_path: Path) -> None:
    case, ref_out = shipped_model_run
    study = reencode_study(case / "dicom", tmp_path / "jpeg", "jpeg-lossless-sv1")
    done = _run(study, tmp_path / "out", REPO / "models")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recommended minimum" not in done.stderr and "Holoscan" not in done.stderr
    ours, ref = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "out", ref_out))
    assert decisions(ours) == decisions(ref)
    assert {s: v["probability"] for s, v in ours["stations"].items()} == {s: v["probability"] for s, v in ref["stations"].items()}


def test_study_whose_only_pet_is_a_derived_suv_export_runs(pipeline_run: tuple[Path, Path], tmp_path: Path) -> None:
    case, ref_out = pipeline_run
    study = tmp_path / "study"
    shutil.copytree(case / "dicom" / "ct", study / "ct")
    derived_suv_pet(case / "dicom", study / "pet_suv")
    models = tmp_path / "models"
    models.mkdir()
    done = _run(study, tmp_path / "out", models)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, ref = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "out", ref_out))
    assert ours["pet_suv"]["units"] == "GML" and ref["pet_suv"]["units"] == "BQML"
    assert decisions(ours) == decisions(ref)
    for station, values in ref["stations"].items():
        assert ours["stations"][station]["suv_max"] == pytest.approx(values["suv_max"], rel=1e-3, abs=1e-3)
