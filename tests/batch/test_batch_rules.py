"""The rules of `nstage batch` without the pipeline: what a study folder is, when a study needs a run,
what a summary row and the cohort metrics hold, the progress bar's counts and time left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nstage.atomic_output import write_text_atomic
from nstage.batch.metrics import cohort_metrics
from nstage.batch.records import (
    CRASHED,
    INPUT_ERROR,
    StudyRecord,
    needs_run,
    remove_stale_staging,
    write_record,
)
from nstage.batch.studies import find_studies, input_fingerprint
from nstage.batch.table import summary_row
from nstage.errors import InputError
from nstage.progress import ProgressBar
from nstage.training.cohort import CohortCase


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "studies"
    (root / "b" / "dicom").mkdir(parents=True)
    (root / "b" / "dicom" / "1.dcm").write_bytes(b"x")
    (root / "a").mkdir()
    (root / "a" / "x.dcm").write_bytes(b"x")
    (root / ".nstage_cache").mkdir()
    (root / "out").mkdir()
    (root / "cohort.csv").write_text("case,tumour_side,n_tnm8\n")
    return root


def test_study_folders_are_the_visible_sub_folders_with_their_dicom_folder(tmp_path: Path) -> None:
    root = _root(tmp_path)
    studies = find_studies(root, out_root=root / "out")
    assert [(s.name, s.input_dir) for s in studies] == [("a", root / "a"), ("b", root / "b" / "dicom")]
    with pytest.raises(InputError, match="holds no study"):
        find_studies(root / ".nstage_cache")
    with pytest.raises(InputError, match="does not exist"):
        find_studies(tmp_path / "nowhere")


def test_finished_and_unchanged_bad_input_are_skipped_everything_else_runs(tmp_path: Path) -> None:
    root, out = _root(tmp_path), tmp_path / "out"
    a, b = find_studies(root, out_root=root / "out")
    assert needs_run(out, a)  # never run
    (out / "a").mkdir(parents=True)
    (out / "a" / "result.json").write_text("{}")
    assert not needs_run(out, a)  # finished
    write_record(out, StudyRecord("b", INPUT_ERROR, "error: bad", 0.1, input_fingerprint(b)))
    assert not needs_run(out, b) and needs_run(out, b, retry_failed=True)
    (b.input_dir / "2.dcm").write_bytes(b"y")  # the input changed: run it again
    assert needs_run(out, b)
    write_record(out, StudyRecord("b", CRASHED, "error: RuntimeError: boom", 0.1, input_fingerprint(b)))
    assert needs_run(out, b)  # a crash is run again by the next batch


def test_staging_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    root, out = _root(tmp_path), tmp_path / "out"
    for name in (".a.k2j3l4m5", ".nstage_batch", ".other.abc12345"):
        (out / name).mkdir(parents=True)
    assert remove_stale_staging(out, find_studies(root)) == 1
    assert sorted(p.name for p in out.iterdir()) == [".nstage_batch", ".other.abc12345"]


def _result(calls: dict[str, bool], n8: str) -> dict:
    return {"tumour_side": "R", "n_stage": {"tnm8": n8, "tnm9": n8},
            "stations": {s: {"malignant": m, "probability": 0.9 if m else 0.1} for s, m in calls.items()},
            "baseline": {"suvmax": {"stations": {s: {"malignant": True} for s in calls}, "n_stage": {"tnm8": "N3", "tnm9": "N3"}},
                         "blood_pool": {"available": False, "reason": "no blood pool"}}}


def test_summary_rows_of_a_finished_and_a_failed_study() -> None:
    ok = summary_row("a", StudyRecord("a", "ok", "", 31.5), _result({"7": True, "4R": False}, "N2"),
                     CohortCase("c", "a", Path("a"), "R", "N2", "N2a", None))
    assert (ok["status"], ok["error"], ok["seconds"], ok["n_tnm8"], ok["truth_tnm9"]) == ("ok", "", 31.5, "N2", "N2a")
    assert (ok["7_call"], ok["7_probability"], ok["4R_call"]) == ("malignant", 0.9, "benign")
    assert ok["baseline_suvmax_stations"] == "7 4R" and "baseline_blood_pool_tnm8" not in ok
    bad = summary_row("b", StudyRecord("b", INPUT_ERROR, "error: series 3 PatientWeight (0010,1030) is missing", 0.2), None)
    assert (bad["status"], bad["error"]) == ("input_error", "error: series 3 PatientWeight (0010,1030) is missing")
    assert "n_tnm8" not in bad and "truth_tnm8" not in bad


def test_cohort_metrics_pool_stations_and_count_n_stages() -> None:
    def case(name: str, truth: dict[str, bool], n8: str) -> CohortCase:
        return CohortCase("c", name, Path(name), "R", n8, n8, truth)

    truth = {"a": case("a", {"7": True, "4R": False}, "N2"), "b": case("b", {"7": False, "4R": False}, "N0"),
             "c": case("c", {"7": True, "4R": True}, "N2")}
    results = {"a": _result({"7": True, "4R": True}, "N2"), "b": _result({"7": False, "4R": False}, "N1")}  # c failed
    m = cohort_metrics(results, truth)
    model = m["methods"]["model"]
    assert (model["studies"], model["stations"]) == (2, 4)
    assert (model["station_sensitivity"], model["station_specificity"], model["station_accuracy"]) == (1.0, 0.667, 0.75)
    assert model["n_accuracy_tnm8"] == 0.5 and m["studies_not_scored"] == ["c"]
    assert m["methods"]["suvmax"]["station_specificity"] == 0.0 and "blood_pool" not in m["methods"]


def test_progress_bar_counts_and_time_left() -> None:
    t = [0.0]
    bar = ProgressBar(5, "batch", clock=lambda: t[0])
    bar.counts["skipped"] = 1  # finished before: no part of the rate
    assert bar.seconds_left() is None
    t[0] = 60.0
    line = bar.advance("done")
    assert bar.seconds_left() == pytest.approx(180.0)
    assert "2/5 (1 done, 1 skipped)" in line and "1m00s elapsed, about 3m00s left" in line
    t[0] = 90.0
    assert "3/5 (1 done, 1 failed, 1 skipped)" in bar.advance("failed")


def test_an_unchanged_table_is_not_rewritten(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    assert write_text_atomic(p, "a,b\r\n")
    before = p.stat().st_mtime_ns
    os.utime(p, ns=(before - 10**9, before - 10**9))
    assert not write_text_atomic(p, "a,b\r\n") and p.stat().st_mtime_ns == before - 10**9
    assert write_text_atomic(p, "a,c\r\n") and p.read_bytes() == b"a,c\r\n"
