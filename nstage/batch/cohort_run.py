"""A whole batch: find the studies, skip the finished ones, run the rest on the cohort executor, write the tables."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nstage.batch.metrics import cohort_metrics, read_truth, write_metrics
from nstage.batch.records import (
    CRASHED,
    RESULT,
    StudyRecord,
    batch_lock,
    is_finished,
    needs_run,
    output_dir,
    read_record,
    remove_stale_staging,
    write_record,
)
from nstage.batch.studies import BatchStudy, find_studies
from nstage.batch.table import SUMMARY, summary_row, write_summary
from nstage.batch.worker import StudyTask, run_study, warm_up
from nstage.cohort_executor import CohortExecutor, ExecutorOptions, WarmUp
from nstage.errors import InputError
from nstage.pipeline import RunOptions, check_options
from nstage.progress import ProgressBar

log = logging.getLogger("nstage")


@dataclass(frozen=True)
class BatchReport:
    """What a batch did: studies run now, skipped (finished before, or failed on unchanged input), failed; the tables written."""

    studies: int
    ran: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] | None = None


def run_batch(studies_root: Path, out_root: Path, models: Path, options: RunOptions, executor: ExecutorOptions = ExecutorOptions(),
              seg_type: str = "BINARY", retry_failed: bool = False) -> BatchReport:
    """Every study of STUDIES_ROOT through the pipeline into OUT_ROOT/<study>; summary.csv (and the cohort metrics) in OUT_ROOT."""
    check_options(options)
    if not Path(models).is_dir():
        raise InputError(f"models folder {models} does not exist (pass -m with the app's models folder)")
    studies = find_studies(studies_root, out_root)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    with batch_lock(out_root):
        if n := remove_stale_staging(out_root, studies):
            log.info("removed %d staging folder(s) of interrupted runs; those studies run again", n)
        todo = [s for s in studies if needs_run(out_root, s, retry_failed)]
        skipped = len(studies) - len(todo)
        log.info("%d studies: %d to run, %d finished or failed on unchanged input before (skipped)", len(studies), len(todo), skipped)
        failed = _run(todo, out_root, models, options, executor, seg_type, skipped, len(studies))
        failed_before = [s.name for s in studies if s not in todo and not is_finished(out_root, s)]
        return _tables(studies_root, out_root, studies, len(todo), skipped, sorted(failed + failed_before))


def _run(todo: list[BatchStudy], out_root: Path, models: Path, options: RunOptions, executor: ExecutorOptions, seg_type: str,
         skipped: int, total: int) -> list[str]:
    """Run the studies that need it; returns the names of those that failed."""
    if not todo:
        log.info("nothing to run: every study is finished (or failed on input that has not changed)")
        return []
    bar = ProgressBar(total, "batch")
    bar.counts["skipped"] = skipped
    failed = []
    tasks = [StudyTask(s, out_root, Path(models).resolve(), options, seg_type) for s in todo]
    with CohortExecutor(executor, WarmUp(warm_up, (Path(models).resolve(), options))) as ex:
        for outcome in ex.map(run_study, tasks):
            study = todo[outcome.index]
            record = outcome.value if outcome.ok else StudyRecord(study.name, CRASHED, f"error: {outcome.error}")
            write_record(out_root, record)
            if record.status != "ok":
                failed.append(study.name)
                log.warning("%s: %s", study.name, record.error)
            else:
                log.info("%s: done in %.1f s", study.name, record.seconds or 0.0)
            bar.advance("done" if record.status == "ok" else "failed")
    remove_stale_staging(out_root, todo)  # attempts of studies whose worker was killed, finished elsewhere since
    return failed


def _tables(studies_root: Path, out_root: Path, studies: list[BatchStudy], ran: int, skipped: int, failed: list[str]) -> BatchReport:
    truth = read_truth(studies_root)
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for s in studies:
        result = json.loads((output_dir(out_root, s) / RESULT).read_text()) if is_finished(out_root, s) else None
        if result is not None:
            results[s.name] = result
        rows.append(summary_row(s.name, read_record(out_root, s.name), result, truth.get(s.name) if truth else None))
    written = [write_summary(out_root / SUMMARY, rows, truth is not None)]
    metrics = None
    if truth:
        metrics = cohort_metrics(results, {k: v for k, v in truth.items() if k in {s.name for s in studies}})
        written += write_metrics(out_root, metrics)
    return BatchReport(len(studies), ran, skipped, failed, written, metrics)
