"""Who was scanned and how: the header facts a synthetic study carries (no pixel data)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

F18_HALF_LIFE_S = 6586.2  # 109.77 min
F18_POSITRON_FRACTION = 0.9673


@dataclass(frozen=True)
class PatientStudy:
    """Patient and study attributes shared by every series of one synthetic study."""

    patient_name: str
    patient_id: str
    birth_date: str  # YYYYMMDD
    sex: str  # "M", "F" or "O"
    age_years: int
    weight_kg: float
    height_m: float
    study_uid: str
    frame_of_reference_uid: str
    study_datetime: datetime
    accession_number: str
    study_id: str
    uid_seed: str  # entropy for deterministic series / instance UIDs


@dataclass(frozen=True)
class PetAcquisition:
    """FDG injection and PET acquisition timing."""

    injected_dose_bq: float
    injection_datetime: datetime
    scan_start: datetime  # start of the first bed position: the START decay-correction reference
    bed_duration_s: float  # acquisition time per bed position
    bed_length_mm: float  # axial extent of one bed position (overlap ignored)
    half_life_s: float = F18_HALF_LIFE_S
    positron_fraction: float = F18_POSITRON_FRACTION

    def decayed_dose_bq(self) -> float:
        """Injected dose decayed to the scan start."""
        dt = (self.scan_start - self.injection_datetime).total_seconds()
        return self.injected_dose_bq * math.exp(-math.log(2.0) * dt / self.half_life_s)


def suv_bw_factor(study: PatientStudy, acq: PetAcquisition) -> float:
    """SUVbw = activity concentration [Bq/ml, decay-corrected to scan start] x this factor."""
    return study.weight_kg * 1000.0 / acq.decayed_dose_bq()
