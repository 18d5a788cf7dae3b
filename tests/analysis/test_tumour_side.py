"""The tumour side found on PET/CT agrees with the truth on a synthetic cohort (>= 98 %)."""

from __future__ import annotations

import numpy as np
import pytest

from nstage.analysis.tumour_side import find_tumour_side
from nstage.geometry import Grid


@pytest.mark.slow
def test_tumour_side_on_a_synthetic_cohort(rendered_cohort) -> None:
    correct = [c.found.side == c.true_side for c in rendered_cohort]
    wrong = [(c.index, c.true_side, c.found.side, c.found.reasons) for c in rendered_cohort if c.found.side != c.true_side]
    assert np.mean(correct) >= 0.98, wrong


def test_no_lungs_means_no_side() -> None:
    g = Grid((20, 40, 40), (4.0, 4.0, 4.0), (-80.0, -80.0, -40.0))
    hu = np.full(g.shape, 40.0, np.float32)  # all soft tissue: an abdomen-like block
    result = find_tumour_side(hu, g, np.ones(g.shape, np.float32), g, np.zeros(g.shape, np.uint8))
    assert result.side is None and result.source == "not found"
    assert "no lungs" in result.reasons[0]
