"""Each sign of the synthetic cohort, read alone, lands in its published range (issue 16 acceptance).

The rows of config/synth/calibration.json are measured on the shared rendered cohort (50 `small`
cases, tests/cohort_eval.py) by nstage.synth.calibration, and the sphere phantom at the `clinical`
preset's PET. bench/synth_calibration.py reports the same rows on a larger cohort of other seeds.
"""

from __future__ import annotations

from typing import Any

import pytest

from nstage.synth.calibration import calibration_table, calibration_targets
from nstage.synth.case import presets_config

RANGED = sorted(k for k, v in calibration_targets()["rows"].items() if "range" in v)


@pytest.fixture(scope="module")
def table(rendered_cohort) -> dict[str, dict[str, Any]]:
    rows = calibration_table([c.calibration for c in rendered_cohort], presets_config()["presets"]["clinical"])
    return {r["row"]: r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("row", RANGED)
def test_row_is_inside_its_published_range(table: dict[str, dict[str, Any]], row: str) -> None:
    measured = [r for key, r in table.items() if key == row or key.startswith(row + "_fwhm_")]
    assert measured, f"{row}: not measured"
    for r in measured:
        assert r["inside"] is True, r


@pytest.mark.slow
def test_the_cohort_has_enough_malignant_stations_to_measure(rendered_cohort) -> None:
    assert sum(r.malignant for c in rendered_cohort for r in c.rows) >= 40
