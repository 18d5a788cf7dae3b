"""`nstage run` on bad input: one `error:` line, a non-zero exit and nothing in the output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.study_factory import write_phantom_study
from tests.ingest.test_study import BAD_STUDIES

END_TO_END = ("no-pet", "no-ct", "nac-only", "other-study", "not-dicom", "empty", "ct-gap", "no-weight")


def _run(study: Path, out: Path, models: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(study), "-o", str(out), "-m", str(models), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.parametrize(("name", "breaks"), [(b[0], b[1]) for b in BAD_STUDIES if b[0] in END_TO_END], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_study_ends_with_an_error_line_and_no_output(tmp_path: Path, name: str, breaks) -> None:
    study = write_phantom_study(tmp_path / "study")
    breaks(study)
    models = tmp_path / "models"
    models.mkdir()
    out = tmp_path / "out"
    res = _run(study, out, models)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), res.stderr[-1500:]
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "staging folder left behind"


def test_missing_models_folder_and_unknown_side_are_errors(tmp_path: Path) -> None:
    study = write_phantom_study(tmp_path / "study")
    res = _run(study, tmp_path / "out", tmp_path / "no-models")
    assert res.returncode != 0 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "models folder" in res.stderr
    res = _run(study, tmp_path / "out", tmp_path, "--tumour-side", "X")
    assert res.returncode != 0
    assert not (tmp_path / "out").exists()
