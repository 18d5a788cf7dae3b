"""Cohorts: a folder of studies plus a CSV (case, tumour_side, n_tnm8[, n_tnm9]).

Station labels, when present (synthetic `OUT/<case>/truth.json` "stations"), are read for
evaluation and for the fully supervised upper bound only; weak training needs the CSV alone.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from nstage.analysis.nrules import TNM9, normalise_side
from nstage.errors import InputError

TNM8 = ("N0", "N1", "N2", "N3")
CSV_NAME = "cohort.csv"


@dataclass(frozen=True)
class CohortCase:
    """One row of a cohort CSV, with the study folder and the station truth when known."""

    cohort: str  # folder name of the cohort (cases of several cohorts may share a case name)
    case: str
    study_dir: Path
    tumour_side: str
    n_tnm8: str
    n_tnm9: str | None
    station_truth: dict[str, bool] | None  # station -> malignant (evaluation / supervised only)

    @property
    def key(self) -> str:
        return f"{self.cohort}/{self.case}"

    @property
    def n_positive(self) -> int | None:
        return None if self.station_truth is None else sum(self.station_truth.values())


def _study_dir(root: Path, case: str) -> Path:
    d = root / case
    return d / "dicom" if (d / "dicom").is_dir() else d


def _truth(root: Path, case: str) -> dict[str, bool] | None:
    p = root / case / "truth.json"
    if not p.is_file():
        return None
    stations = json.loads(p.read_text()).get("stations")
    return {s: bool(v["malignant"]) for s, v in stations.items()} if stations else None


def read_cohort(root: Path, csv_path: Path | None = None, require_studies: bool = True) -> list[CohortCase]:
    """The cases of a cohort folder (CSV default ROOT/cohort.csv), in CSV order."""
    root = Path(root)
    csv_path = Path(csv_path) if csv_path else root / CSV_NAME
    if not csv_path.is_file():
        raise InputError(f"no cohort CSV at {csv_path}: a cohort is a folder of studies plus cohort.csv (case,tumour_side,n_tnm8[,n_tnm9])")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"case", "tumour_side", "n_tnm8"} - set(rows[0] if rows else {})
    if missing:
        raise InputError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
    out = []
    for n, r in enumerate(rows, start=2):
        where = f"{csv_path} line {n}"
        side = normalise_side(r["tumour_side"]) if r["tumour_side"] else None
        if side is None:
            raise InputError(f"{where}: tumour_side must be R or L for weak labels (got {r['tumour_side']!r})")
        if r["n_tnm8"] not in TNM8:
            raise InputError(f"{where}: n_tnm8 must be one of {', '.join(TNM8)} (got {r['n_tnm8']!r})")
        tnm9 = (r.get("n_tnm9") or "").strip() or None
        if tnm9 is not None and tnm9 not in TNM9:
            raise InputError(f"{where}: n_tnm9 must be one of {', '.join(TNM9)} or empty (got {tnm9!r})")
        study = _study_dir(root, r["case"])
        if require_studies and not study.is_dir():
            raise InputError(f"{where}: no study folder for case {r['case']!r} under {root}")
        out.append(CohortCase(root.name, r["case"], study, side, r["n_tnm8"], tnm9, _truth(root, r["case"])))
    return out


def read_cohorts(roots: list[Path]) -> list[CohortCase]:
    """Several cohort folders read one after the other."""
    cases = [c for r in roots for c in read_cohort(r)]
    keys = [c.key for c in cases]
    if len(set(keys)) != len(keys):
        raise InputError("two cohort folders share a name; give each cohort folder its own name")
    return cases
