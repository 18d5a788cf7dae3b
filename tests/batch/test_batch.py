"""`nstage batch` end to end on a real LocalCluster of 2 worker processes.

Four small synthetic studies (three good ones of one `nstage synth` cohort, one copy with a PET slice
deleted in the middle); one batch run, during which the worker process analysing one study is killed
with SIGKILL in the middle of its atlas registration; then the same batch again. Compared with
`nstage run` on each study. No trained model (an empty models folder: the SUV slot), as `nstage run`
does without one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.conftest import REPO, SYNTH_SEED

pytestmark = pytest.mark.slow

GOOD = ("case_0000", "case_0001", "case_0002")
BROKEN = "case_9000_broken"
KILLED = "case_0001"
WAIT_S = 600


@dataclass
class BatchRun:
    studies: Path
    out: Path
    first: subprocess.CompletedProcess
    first_log: str
    killed_pid: int
    second: subprocess.CompletedProcess
    mtimes_before: dict[str, int]
    mtimes_after: dict[str, int]
    references: dict[str, Path]
    broken_error: str


def _nstage(*args: str) -> list[str]:
    return [sys.executable, "-m", "nstage.cli", *args]


def _studies(small_cohort: Path, root: Path) -> Path:
    """case_0000/0001 of the session's cohort, case_0002 of the same seed, and a broken copy of case_0001."""
    root.mkdir(parents=True)
    for case in ("case_0000", "case_0001"):
        shutil.copytree(small_cohort / case, root / case)
    shutil.copy(small_cohort / "cohort.csv", root / "cohort.csv")
    subprocess.run(_nstage("synth", str(root), "--cases", "1", "--first", "2", "--seed", str(SYNTH_SEED), "--preset", "small"),
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    shutil.copytree(root / "case_0001", root / BROKEN)
    pet = sorted((root / BROKEN / "dicom" / "pet").iterdir())
    pet[len(pet) // 2].unlink()
    return root


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".nstage_batch" not in p.parts}


def _wait_line(path: Path, pattern: str, proc: subprocess.Popen) -> re.Match:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return m
        assert proc.poll() is None, f"nstage batch ended before {pattern!r}:\n{path.read_text()[-3000:]}"
        time.sleep(0.3)
    raise TimeoutError(pattern)


@pytest.fixture(scope="module")
def batch_run(small_cohort: Path, pipeline_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    work = tmp_path_factory.mktemp("batch")
    studies = _studies(small_cohort, work / "studies")
    models = work / "models"
    models.mkdir()
    out = work / "out"
    log_path = work / "batch1.log"
    cmd = _nstage("batch", "-i", str(studies), "-o", str(out), "-m", str(models), "--jobs", "2")
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            pid = int(_wait_line(log_path, rf"{KILLED}: started \(worker process (\d+)\)", proc).group(1))
            _wait_line(log_path, rf"{KILLED}: stations \(atlas registration\) \.\.\.", proc)
            os.kill(pid, signal.SIGKILL)
            rc = proc.wait(WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    first = subprocess.CompletedProcess(cmd, rc)
    first_log = log_path.read_text(errors="replace")
    # references: `nstage run` on each study (case_0000's is the session's pipeline_run), run meanwhile two at a time
    refs = {"case_0000": pipeline_run[1]}
    runs = {c: subprocess.Popen(_nstage("run", "-i", str(studies / c / "dicom"), "-o", str(work / f"ref_{c}"), "-m", str(models)),
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in ("case_0001", "case_0002")}
    for c, p in runs.items():
        _, err = p.communicate(timeout=WAIT_S)
        assert p.returncode == 0, err[-3000:]
        refs[c] = work / f"ref_{c}"
    broken = subprocess.run(_nstage("run", "-i", str(studies / BROKEN / "dicom"), "-o", str(work / "ref_broken"), "-m", str(models)),
                            cwd=REPO, capture_output=True, text=True, timeout=WAIT_S)
    assert broken.returncode == 2
    before = _mtimes(out)
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=WAIT_S)
    return BatchRun(studies, out, first, first_log, pid, second, before, _mtimes(out), refs, broken.stderr.strip().splitlines()[-1])


def _summary(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _decisions(result: dict) -> dict:
    return {"n_stage": result["n_stage"], "tumour_side": result["tumour_side"],
            "stations": {s: (v["malignant"], v["probability"]) for s, v in result["stations"].items()},
            "baselines": {b: v.get("n_stage") for b, v in result["baseline"].items()}}


def test_batch_gives_the_decisions_of_nstage_run_for_every_good_study(batch_run: BatchRun) -> None:
    assert batch_run.first.returncode == 1, batch_run.first_log[-3000:]  # one study failed
    for case in GOOD:
        ours = json.loads((batch_run.out / case / "result.json").read_text())
        ref = json.loads((batch_run.references[case] / "result.json").read_text())
        assert _decisions(ours) == _decisions(ref), case
        assert sorted(p.name for p in (batch_run.out / case).iterdir()) == sorted(p.name for p in batch_run.references[case].iterdir())


def test_the_broken_study_is_recorded_with_its_error_line(batch_run: BatchRun) -> None:
    rows = {r["study"]: r for r in _summary(batch_run.out)}
    assert sorted(rows) == sorted((*GOOD, BROKEN))
    assert rows[BROKEN]["status"] == "input_error" and rows[BROKEN]["n_tnm8"] == ""
    assert batch_run.broken_error.startswith("error: ") and "missing slice" in batch_run.broken_error
    assert rows[BROKEN]["error"] == batch_run.broken_error
    assert not (batch_run.out / BROKEN).exists()
    for case in GOOD:
        result = json.loads((batch_run.out / case / "result.json").read_text())
        r = rows[case]
        assert (r["status"], r["error"], r["n_tnm8"], r["n_tnm9"]) == ("ok", "", result["n_stage"]["tnm8"], result["n_stage"]["tnm9"])
        assert r["7_call"] == ("malignant" if result["stations"]["7"]["malignant"] else "benign")
        assert float(r["7_probability"]) == result["stations"]["7"]["probability"]
        assert r["baseline_suvmax_tnm8"] == result["baseline"]["suvmax"]["n_stage"]["tnm8"]
        assert r["truth_tnm8"] == json.loads((batch_run.studies / case / "truth.json").read_text())["n_stage"]["tnm8"]


def test_the_study_of_the_killed_worker_is_redone_elsewhere_and_appears_once(batch_run: BatchRun) -> None:
    log = batch_run.first_log
    starts = re.findall(rf"{KILLED}: started \(worker process (\d+)\)", log)
    assert len(starts) == 2 and int(starts[0]) == batch_run.killed_pid and int(starts[1]) != batch_run.killed_pid, starts
    assert log.count(f"{KILLED}: done in") == 1
    assert [r["study"] for r in _summary(batch_run.out)].count(KILLED) == 1
    assert [p.name for p in batch_run.out.iterdir() if p.name.startswith(".")] == [".nstage_batch"]  # no staging folder left


def test_model_and_atlas_are_loaded_once_per_worker_process(batch_run: BatchRun) -> None:
    loaded = re.findall(r"worker process (\d+): model and atlas loaded", batch_run.first_log)
    started = re.findall(r": started \(worker process (\d+)\)", batch_run.first_log)
    assert len(started) == 5  # 4 studies, one of them twice
    assert len(loaded) == len(set(loaded)) <= 3  # once in each of the 2 worker processes and in the one restarted after the kill
    assert set(started) <= set(loaded)


def test_a_second_batch_does_no_work(batch_run: BatchRun) -> None:
    assert batch_run.second.returncode == 1  # the broken study is still failed (its input is unchanged)
    err = batch_run.second.stderr
    assert "nothing to run" in err and "started (worker process" not in err
    assert "4 studies: 0 run now, 4 skipped" in batch_run.second.stdout
    assert batch_run.mtimes_after == batch_run.mtimes_before
    assert [r["study"] for r in _summary(batch_run.out)] == sorted((*GOOD, BROKEN))


def test_cohort_metrics_are_written_beside_the_summary(batch_run: BatchRun) -> None:
    metrics = json.loads((batch_run.out / "cohort_metrics.json").read_text())
    assert metrics["studies_scored"] == 3 and metrics["studies_with_truth"] == 3
    model = metrics["methods"]["model"]
    assert model["studies"] == 3 and model["stations"] == 3 * 17
    truth = {c: json.loads((batch_run.studies / c / "truth.json").read_text()) for c in GOOD}
    results = {c: json.loads((batch_run.out / c / "result.json").read_text()) for c in GOOD}
    right = sum(results[c]["n_stage"]["tnm8"] == truth[c]["n_stage"]["tnm8"] for c in GOOD)
    assert model["n_accuracy_tnm8"] == round(right / 3, 3)
    with (batch_run.out / "cohort_metrics.csv").open(newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)][0] == "model"
    assert "cohort metrics against the generator's truth" in batch_run.second.stdout


def test_logs_name_studies_and_stages_but_no_patient(batch_run: BatchRun) -> None:
    log = batch_run.first_log + batch_run.second.stderr + batch_run.second.stdout
    assert re.search(r"case_0002: stations \(atlas registration\) done in \d+\.\d s", log)
    assert re.search(r"batch \[#+-*\] \d/4 \(", log)
    for case in (*GOOD, BROKEN):
        ds = pydicom.dcmread(next((batch_run.studies / case / "dicom" / "ct").iterdir()), stop_before_pixels=True)
        for word in {str(ds.PatientID), *[p for p in str(ds.PatientName).split("^") if len(p) > 3]}:
            assert word not in log, f"{word!r} appears in the batch's log"
