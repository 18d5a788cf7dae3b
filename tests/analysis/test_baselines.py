"""The two SUV baselines: threshold edges, the blood-pool measure, and their N stages through the rules."""

from __future__ import annotations

from nstage.analysis.baselines import blood_pool_baseline, suvmax_baseline
from nstage.analysis.measure import StationUptake


def _u(suv_max: float, suv_peak: float) -> StationUptake:
    return StationUptake(1, 10.0, suv_max, suv_peak * 0.6, suv_peak, (0.0, 0.0, 0.0))


def test_suvmax_threshold_is_inclusive_and_stages_by_side() -> None:
    uptake = {"4R": _u(2.5, 1.0), "4L": _u(2.49, 2.4), "10R": _u(6.0, 4.0)}
    right = suvmax_baseline(uptake, "R")
    assert right.calls == {"4R": True, "4L": False, "10R": True}
    assert (right.n_stage.tnm8, right.n_stage.tnm9) == ("N2", "N2a")
    left = suvmax_baseline(uptake, "L")  # 4R and 10R are contralateral for a left tumour
    assert left.n_stage.tnm8 == "N3"


def test_blood_pool_criterion_uses_suvpeak_above_the_pool() -> None:
    """A noisy large station with a high SUVmax but a low SUVpeak is not above the blood pool."""
    uptake = {"7": _u(3.0, 1.7), "4R": _u(2.2, 2.1), "2R": _u(1.9, 1.8)}
    b = blood_pool_baseline(uptake, 1.8, "R")
    assert b.calls == {"7": False, "4R": True, "2R": False}  # strictly above: 1.8 is not
    assert "SUVpeak" in b.rule and "1.80" in b.rule
    assert (b.n_stage.tnm8, b.n_stage.tnm9) == ("N2", "N2a")
    assert blood_pool_baseline(uptake, 1.6, "R").n_stage.tnm9 == "N2b"
