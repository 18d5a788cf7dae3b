"""Cohort metrics of a batch against the generator's truth (cohort.csv + truth.json per study).

Per method (the classifier, and each reader baseline of result.json): station sensitivity,
specificity and accuracy pooled over the finished studies (a station the pipeline did not map
counts as called benign), and N-stage accuracy (TNM 8 and TNM 9) over the same studies. Studies
that failed are counted, not scored. Written beside summary.csv as cohort_metrics.csv and .json.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nstage.atomic_output import write_text_atomic
from nstage.batch.table import BASELINES, csv_text
from nstage.errors import InputError
from nstage.training.cohort import CSV_NAME, CohortCase, read_cohort
from nstage.training.metrics import binary_figures, nstage_metrics

log = logging.getLogger("nstage")
METRICS_CSV, METRICS_JSON = "cohort_metrics.csv", "cohort_metrics.json"
COLUMNS = ("method", "studies", "stations", "station_sensitivity", "station_specificity", "station_accuracy", "n_accuracy_tnm8", "n_accuracy_tnm9")


def read_truth(studies_root: Path) -> dict[str, CohortCase] | None:
    """The cohort's truth per study name, or None without a cohort.csv (or with one that cannot be read: a warning)."""
    if not (Path(studies_root) / CSV_NAME).is_file():
        return None
    try:
        return {c.case: c for c in read_cohort(Path(studies_root), require_studies=False)}
    except InputError as exc:
        log.warning("cohort metrics left out: %s", exc)
        return None


def _calls(result: Mapping[str, Any], method: str) -> tuple[dict[str, bool], Mapping[str, str]] | None:
    """(station -> malignant, N stage) of one method in a result.json; None when the method was not available."""
    block = result if method == "model" else result.get("baseline", {}).get(method, {})
    if block.get("available") is False or "stations" not in block:
        return None
    return {s: bool(v["malignant"]) for s, v in block["stations"].items()}, block.get("n_stage", {})


def _figure(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else round(float(x), 3)


def cohort_metrics(results: Mapping[str, Mapping[str, Any]], truth: Mapping[str, CohortCase]) -> dict[str, Any]:
    """Station and N-stage figures per method over the studies that finished and have truth."""
    scored = sorted(s for s in results if s in truth)
    methods: dict[str, dict[str, Any]] = {}
    for method in ("model", *BASELINES):
        pred, y, n8, t8, n9, t9, studies = [], [], [], [], [], [], 0
        for s in scored:
            got = _calls(results[s], method)
            if got is None:
                continue
            calls, stage = got
            studies += 1
            case = truth[s]
            for station, malignant in (case.station_truth or {}).items():
                pred.append(calls.get(station, False))
                y.append(malignant)
            n8.append(stage.get("tnm8", ""))
            t8.append(case.n_tnm8)
            if case.n_tnm9:
                n9.append(stage.get("tnm9", ""))
                t9.append(case.n_tnm9)
        if not studies:
            continue
        st = binary_figures(np.array(pred, bool), np.array(y, bool))
        methods[method] = {"studies": studies, "stations": len(y), "station_sensitivity": _figure(st["sensitivity"]),
                           "station_specificity": _figure(st["specificity"]), "station_accuracy": _figure(st["accuracy"]),
                           "n_accuracy_tnm8": _figure(nstage_metrics(n8, t8)["accuracy"]),
                           "n_accuracy_tnm9": _figure(float(np.mean(np.array(n9) == np.array(t9)))) if t9 else None}
    return {"studies_with_truth": len([s for s in truth]), "studies_scored": len(scored),
            "studies_not_scored": sorted(set(truth) - set(scored)), "methods": methods}


def write_metrics(out_root: Path, metrics: Mapping[str, Any]) -> list[Path]:
    """cohort_metrics.csv (one row per method) and cohort_metrics.json (everything) in OUT_ROOT."""
    out_root = Path(out_root)
    csv_path, json_path = out_root / METRICS_CSV, out_root / METRICS_JSON
    write_text_atomic(csv_path, csv_text(COLUMNS, [{"method": name, **m} for name, m in metrics["methods"].items()]))
    write_text_atomic(json_path, json.dumps(metrics, indent=1) + "\n")
    return [csv_path, json_path]


def metrics_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The metrics as a printed table."""
    lines = [f"cohort metrics against the generator's truth ({metrics['studies_scored']} of {metrics['studies_with_truth']} studies scored):",
             f"{'method':<11} {'studies':>7} {'sens':>6} {'spec':>6} {'acc':>6} {'N8 acc':>7} {'N9 acc':>7}"]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"
    for name, m in metrics["methods"].items():
        lines.append(f"{name:<11} {m['studies']:>7} {f(m['station_sensitivity']):>6} {f(m['station_specificity']):>6} "
                     f"{f(m['station_accuracy']):>6} {f(m['n_accuracy_tnm8']):>7} {f(m['n_accuracy_tnm9']):>7}")
    return lines
