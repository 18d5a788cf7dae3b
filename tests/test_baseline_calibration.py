"""The cohort is neither trivial nor hopeless for the SUVmax >= 2.5 rule (issue acceptance).

Renders 40 `small` cases (PET and CT in memory, no DICOM) and measures the rule inside the true
station regions: station sensitivity must land in 0.60-0.85 and specificity in 0.85-0.93.
"""

from __future__ import annotations

import pytest

from nstage.synth.calibration import station_rows, threshold_rule_performance

CALIBRATION_SEED = 20261126
CASES = 40


@pytest.mark.slow
def test_suv_threshold_rule_lands_in_the_clinical_range() -> None:
    perf = threshold_rule_performance(station_rows(CALIBRATION_SEED, CASES, "small", jobs=2))
    assert perf["n_malignant"] >= 30
    assert 0.60 <= perf["sensitivity"] <= 0.85, perf
    assert 0.85 <= perf["specificity"] <= 0.93, perf
