"""One rendered synthetic cohort (PET and CT in memory, no DICOM) shared by the cohort-level tests."""

from __future__ import annotations

from dataclasses import dataclass

from nstage.analysis.tumour_side import TumourSide, find_tumour_side
from nstage.cohort_executor import map_all
from nstage.progress import StageTimer
from nstage.synth.calibration import CaseRows, StationRow, case_rows
from nstage.synth.case import render_case

COHORT_SEED = 20261126
COHORT_CASES = 50


@dataclass(frozen=True)
class CaseResult:
    index: int
    calibration: CaseRows  # every station and node as the calibration measures them
    true_side: str
    found: TumourSide

    @property
    def rows(self) -> list[StationRow]:
        return self.calibration.stations


def evaluate_case(index: int) -> CaseResult:
    rc = render_case(f"case_{index:04d}", COHORT_SEED, index, "small", "default", None, StageTimer())
    found = find_tumour_side(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, rc.stations)
    return CaseResult(index, case_rows(rc, index), rc.truth["tumour_side"], found)


def evaluate_cohort(jobs: int = 2) -> list[CaseResult]:
    """Every case rendered and evaluated on the cohort executor (`jobs` local worker processes), in index order."""
    return map_all(evaluate_case, range(COHORT_CASES), jobs)
