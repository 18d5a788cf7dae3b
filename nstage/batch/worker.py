"""One study of a batch, as a worker process runs it: `nstage run`'s own function into OUT_ROOT/<study>.

The function and its task are picklable (they travel to Dask workers). Log lines carry the study's
folder name and the worker's process id, never a patient name or ID. The model and the atlas are
loaded by the warm-up when the worker process starts and kept by the loaders' per-process caches.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nstage.batch.records import CRASHED, INPUT_ERROR, OK, StudyRecord, output_dir
from nstage.batch.studies import BatchStudy, input_fingerprint
from nstage.cohort_executor import error_text
from nstage.errors import InputError
from nstage.pipeline import RunOptions, load_default_atlases
from nstage.progress import log_label

log = logging.getLogger("nstage")


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs for one study (paths must be visible from the worker's machine)."""

    study: BatchStudy
    out_root: Path
    models: Path
    options: RunOptions
    seg_type: str = "BINARY"


def warm_up(models: Path, options: RunOptions) -> None:
    """Load the classifier and the atlas(es) once in this process; a failure is left to each study to report."""
    from nstage.analysis.classifier.slot import load_classifier

    t0 = time.perf_counter()
    try:
        load_classifier(Path(models))
        load_default_atlases(options)
    except Exception as exc:  # noqa: BLE001 - every study then ends with this error line of its own
        log.warning("worker process %d: model or atlas not loaded (%s)", os.getpid(), error_text(exc))
        return
    log.info("worker process %d: model and atlas loaded in %.1f s", os.getpid(), time.perf_counter() - t0)


def run_study(task: StudyTask) -> StudyRecord:
    """Analyse one study into OUT_ROOT/<study> (atomically, as `nstage run`); its record, ok or with the error line."""
    from nstage.runner import run

    study = task.study
    fingerprint = input_fingerprint(study)
    with log_label(study.name):
        log.info("started (worker process %d)", os.getpid())
        t0 = time.perf_counter()
        try:
            result = run(study.input_dir, output_dir(task.out_root, study), task.models, task.options, task.seg_type)
            status, error = OK, ""
            log.info("finished in %.1f s: %s (TNM 8), %s (TNM 9)", time.perf_counter() - t0, result["n_stage"]["tnm8"], result["n_stage"]["tnm9"])
        except InputError as exc:
            status, error = INPUT_ERROR, f"error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a crash of one study is recorded; the batch goes on
            status, error = CRASHED, f"error: {error_text(exc)}"
            log.exception("crashed")
        if error:
            log.warning("failed after %.1f s: %s", time.perf_counter() - t0, error)
    return StudyRecord(study.name, status, error, round(time.perf_counter() - t0, 1), fingerprint,
                       datetime.now(timezone.utc).isoformat(timespec="seconds"))
