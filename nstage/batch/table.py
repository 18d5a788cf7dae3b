"""OUT_ROOT/summary.csv: one row per study of a batch, for a spreadsheet.

Columns: study, status (ok | input_error | crashed | not run), error (the `error:` line), seconds (the
study's wall time in its last run), tumour_side, n_tnm8, n_tnm9, truth_tnm8 and truth_tnm9 (only when
the studies root carries the generator's cohort.csv), then per station (atlas/stations.json order)
`<station>_call` (malignant | benign | empty when the station was not mapped) and
`<station>_probability`, then per reader baseline `baseline_<name>_tnm8`, `baseline_<name>_tnm9` and
`baseline_<name>_stations` (the stations it calls malignant, space-separated).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nstage.atomic_output import write_text_atomic
from nstage.batch.records import StudyRecord
from nstage.stations import load_stations
from nstage.training.cohort import CohortCase

SUMMARY = "summary.csv"
BASELINES = ("suvmax", "blood_pool", "ct_size", "combined")  # result.json's baseline blocks, in the report's order


def summary_columns(with_truth: bool) -> list[str]:
    cols = ["study", "status", "error", "seconds", "tumour_side", "n_tnm8", "n_tnm9"]
    if with_truth:
        cols += ["truth_tnm8", "truth_tnm9"]
    for s in load_stations():
        cols += [f"{s.station}_call", f"{s.station}_probability"]
    for b in BASELINES:
        cols += [f"baseline_{b}_tnm8", f"baseline_{b}_tnm9", f"baseline_{b}_stations"]
    return cols


def summary_row(name: str, record: StudyRecord | None, result: Mapping[str, Any] | None, truth: CohortCase | None = None) -> dict[str, Any]:
    """One study's row: from its result.json when it finished, else its record's error (columns left out stay empty)."""
    row: dict[str, Any] = {"study": name, "status": record.status if record else ("ok" if result else "not run"),
                           "error": record.error if record and not result else "",
                           "seconds": "" if record is None or record.seconds is None else record.seconds}
    if truth is not None:
        row["truth_tnm8"], row["truth_tnm9"] = truth.n_tnm8, truth.n_tnm9 or ""
    if not result:
        return row
    row["status"] = "ok"
    row.update(tumour_side=result.get("tumour_side") or "", n_tnm8=result["n_stage"]["tnm8"], n_tnm9=result["n_stage"]["tnm9"])
    for station, s in result["stations"].items():
        row[f"{station}_call"] = "malignant" if s["malignant"] else "benign"
        row[f"{station}_probability"] = s["probability"]
    for b in BASELINES:
        block = result.get("baseline", {}).get(b, {})
        if block.get("available") is False:
            continue
        row[f"baseline_{b}_tnm8"] = block.get("n_stage", {}).get("tnm8", "")
        row[f"baseline_{b}_tnm9"] = block.get("n_stage", {}).get("tnm9", "")
        row[f"baseline_{b}_stations"] = " ".join(st for st, c in block.get("stations", {}).items() if c.get("malignant"))
    return row


def csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A comma-separated table with one header line (CRLF line ends, as the csv module writes for spreadsheets)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_summary(path: Path, rows: Sequence[Mapping[str, Any]], with_truth: bool) -> Path:
    """Write the table (UTF-8) atomically, and only when it changed (a batch that did nothing leaves it untouched)."""
    write_text_atomic(Path(path), csv_text(summary_columns(with_truth), rows))
    return Path(path)
