"""One rendered synthetic cohort (PET and CT in memory, no DICOM) shared by the cohort-level tests."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from nstage.analysis.measure import station_uptake
from nstage.analysis.tumour_side import TumourSide, find_tumour_side
from nstage.progress import StageTimer
from nstage.stations import load_stations
from nstage.synth.calibration import StationRow
from nstage.synth.case import render_case

COHORT_SEED = 20261126
COHORT_CASES = 50


@dataclass(frozen=True)
class CaseResult:
    index: int
    rows: list[StationRow]
    true_side: str
    found: TumourSide


def evaluate_case(index: int) -> CaseResult:
    rc = render_case(f"case_{index:04d}", COHORT_SEED, index, "small", "default", None, StageTimer())
    uptake = station_uptake(rc.suv, rc.pet_grid, rc.stations, rc.ct_grid)
    rows = [StationRow(index, s.station, bool(rc.truth["stations"][s.station]["malignant"]), uptake[s.label].suv_max if s.label in uptake else 0.0)
            for s in load_stations()]
    found = find_tumour_side(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, rc.stations)
    return CaseResult(index, rows, rc.truth["tumour_side"], found)


def evaluate_cohort(jobs: int = 2) -> list[CaseResult]:
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(evaluate_case, range(COHORT_CASES)))
