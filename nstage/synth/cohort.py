"""`nstage synth`: write a cohort of synthetic studies with their truth files, atomically."""

from __future__ import annotations

import csv
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from nstage.atomic_output import staged_output
from nstage.cohort_executor import ExecutorOptions, map_all
from nstage.geometry import save_nifti
from nstage.progress import StageTimer
from nstage.synth.case import render_case

log = logging.getLogger("nstage")
COHORT_COLUMNS = ("case", "tumour_side", "n_tnm8", "n_tnm9")

CASE_ENTRIES = ("dicom", "truth.json", "truth_stations.nii.gz", "truth_suv.nii.gz", "preview.png")  # what a case folder holds


def case_name(index: int) -> str:
    return f"case_{index:04d}"


def write_case(out: Path, seed: int, index: int, preset: str, vendor: str, preview: bool) -> dict[str, Any]:
    """Render one case into OUT/<case>/ (staged, moved into place at the end; an earlier run's case is replaced)."""
    name = case_name(index)
    timer = StageTimer(prefix=f"{name}: ")
    with staged_output(out / name, stale=CASE_ENTRIES) as tmp:
        rc = render_case(name, seed, index, preset, vendor, tmp / "dicom", timer)
        with timer.stage("truth files"):
            save_nifti(rc.stations, rc.ct_grid, tmp / "truth_stations.nii.gz")
            save_nifti(rc.suv, rc.pet_grid, tmp / "truth_suv.nii.gz")
            rc.truth["timings_s"] = dict(timer.timings)
            (tmp / "truth.json").write_text(json.dumps(rc.truth, indent=1))
        if preview:
            # matplotlib is imported only when a preview is asked for
            from nstage.synth.preview import write_preview

            with timer.stage("preview"):
                write_preview(tmp / "preview.png", rc.ct_grid, rc.hu, rc.stations, rc.pet_grid, rc.suv, rc.truth)
    return rc.truth


def _write_indexed_case(out: Path, seed: int, preset: str, vendor: str, preview: bool, index: int) -> dict[str, Any]:
    return write_case(out, seed, index, preset, vendor, preview)


def write_cohort(out: Path, cases: int, seed: int, preset: str, vendor: str, preview: bool = False, jobs: int | ExecutorOptions = 1,
                 first: int = 0) -> list[dict[str, Any]]:
    """Render `cases` cases (indices first..first+cases-1; on the cohort executor: `jobs` workers or a cluster) and write OUT/cohort.csv."""
    out.mkdir(parents=True, exist_ok=True)
    indices = list(range(first, first + cases))
    truths = map_all(partial(_write_indexed_case, out, seed, preset, vendor, preview), indices, jobs, label="synth")
    _write_cohort_csv(out / "cohort.csv", truths)
    return truths


def _write_cohort_csv(path: Path, truths: list[dict[str, Any]]) -> None:
    """cohort.csv: one row per case present in the folder (merging with earlier rows)."""
    rows: dict[str, dict[str, str]] = {}
    if path.exists():
        with path.open() as f:
            rows = {r["case"]: r for r in csv.DictReader(f)}
    for t in truths:
        rows[t["case"]] = {"case": t["case"], "tumour_side": t["tumour_side"], "n_tnm8": t["n_stage"]["tnm8"], "n_tnm9": t["n_stage"]["tnm9"]}
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COHORT_COLUMNS)
        w.writeheader()
        for k in sorted(rows):
            w.writerow({c: rows[k][c] for c in COHORT_COLUMNS})
    tmp.replace(path)
