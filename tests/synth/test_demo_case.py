"""`make demo`'s case is chosen by a rule: the first seed from 2026 upward whose truth is N2 with a metastatic node
a reader can see (short axis >= 10 mm or SUVmax >= 2.5). A generator change that moves the case fails here."""

from __future__ import annotations

import re

from nstage.analysis.nrules import stage
from nstage.synth.case import case_disease
from tests.conftest import REPO

FIRST_SEED = 2026


def _visible_n2(seed: int) -> bool:
    disease = case_disease(seed, 0)
    if stage(disease.malignant_stations, disease.tumour.side, "tnm").tnm8 != "N2":
        return False
    return any(n.malignant and (n.short_axis_mm >= 10.0 or n.suv >= 2.5) for n in disease.nodes)


def test_the_demo_seed_is_the_first_visible_n2_from_2026():
    makefile = (REPO / "Makefile").read_text()
    seed = int(re.search(r"^DEMO_RULE_SEED := (\d+)$", makefile, re.M).group(1))
    assert re.search(r"^DEMO_SEED \?= \$\(DEMO_RULE_SEED\)$", makefile, re.M)
    assert _visible_n2(seed)
    assert not any(_visible_n2(s) for s in range(FIRST_SEED, seed))
    assert not _visible_n2(FIRST_SEED)  # the occult counter-example the README names
