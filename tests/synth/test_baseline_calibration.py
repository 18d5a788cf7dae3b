"""The cohort is neither trivial nor hopeless for the SUVmax >= 2.5 rule (issue acceptance).

50 rendered `small` cases; SUVmax is measured inside the true station regions: station
sensitivity must land in 0.60-0.85 and specificity in 0.85-0.93.
"""

from __future__ import annotations

import pytest

from nstage.synth.calibration import threshold_rule_performance


@pytest.mark.slow
def test_suv_threshold_rule_lands_in_the_clinical_range(rendered_cohort) -> None:
    perf = threshold_rule_performance([r for case in rendered_cohort for r in case.rows])
    assert perf["n_malignant"] >= 40
    assert 0.60 <= perf["sensitivity"] <= 0.85, perf
    assert 0.85 <= perf["specificity"] <= 0.93, perf
