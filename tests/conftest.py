"""Shared fixtures: a small synthetic cohort written once per test session through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SYNTH_SEED = 424242


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two `small` cases written by `nstage synth` (the command a user runs)."""
    out = tmp_path_factory.mktemp("cohort")
    cmd = [sys.executable, "-m", "nstage.cli", "synth", str(out), "--cases", "2", "--seed", str(SYNTH_SEED), "--preset", "small", "--preview"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return out


def load_truth(case_dir: Path) -> dict:
    return json.loads((case_dir / "truth.json").read_text())


@pytest.fixture(scope="session")
def rendered_cohort():
    """50 `small` cases rendered in memory and evaluated once (tests/cohort_eval.py)."""
    from tests.cohort_eval import evaluate_cohort

    return evaluate_cohort(jobs=2)


@pytest.fixture(scope="session")
def shipped_model_run(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`nstage run` once on the first small case with the shipped station model (models/); (case folder, output folder)."""
    case = small_cohort / "case_0000"
    out = tmp_path_factory.mktemp("run_shipped") / "out"
    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(case / "dicom"), "-o", str(out), "-m", str(REPO / "models")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return case, out


@pytest.fixture(scope="session")
def pipeline_run(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`nstage run` once on the first small case (no trained model: the SUV slot); (case folder, output folder)."""
    case = small_cohort / "case_0000"
    base = tmp_path_factory.mktemp("run")
    (base / "models").mkdir()
    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(case / "dicom"), "-o", str(base / "out"), "-m", str(base / "models")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return case, base / "out"
