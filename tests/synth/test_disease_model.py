"""The disease model: N-stage shares, spread pattern, truth consistent with the N rules."""

from __future__ import annotations

from collections import Counter

import numpy as np

from nstage.analysis.nrules import load_rules, stage
from nstage.synth.disease import sample_disease

N_SEEDS = 600


def _cohort() -> list:
    return [sample_disease(np.random.default_rng([7, s])) for s in range(N_SEEDS)]


def test_n_stage_shares_match_the_clinical_mix() -> None:
    counts = Counter(stage(d.malignant_stations, d.tumour.side).tnm8 for d in _cohort())
    shares = {k: counts[k] / N_SEEDS for k in ("N0", "N1", "N2", "N3")}
    for k, want in {"N0": 0.45, "N1": 0.15, "N2": 0.28, "N3": 0.12}.items():
        assert abs(shares[k] - want) < 0.05, shares


def test_station_truth_stages_to_the_drawn_category_and_both_n2_kinds_occur() -> None:
    tnm9 = Counter()
    for d in _cohort():
        n = stage(d.malignant_stations, d.tumour.side)
        assert n.tnm8 == d.target_n
        tnm9[n.tnm9] += 1
        malignant_nodes = {x.station for x in d.nodes if x.malignant}
        assert malignant_nodes == set(d.malignant_stations)
    assert tnm9["N2a"] > 20 and tnm9["N2b"] > 20


def test_spread_is_mostly_hilar_first_with_some_skip_metastases() -> None:
    rules = load_rules("tnm")
    n2 = [d for d in _cohort() if d.target_n == "N2"]
    with_hilar = [d for d in n2 if set(d.malignant_stations) & set(rules.stations(d.tumour.side, "N1"))]
    frac = len(with_hilar) / len(n2)
    assert 0.55 < frac < 0.85, frac  # hilar first mostly, skip metastases sometimes


def test_confounders_exist() -> None:
    kinds = Counter(n.kind for d in _cohort() for n in d.nodes)
    small_malignant = sum(1 for d in _cohort() for n in d.nodes if n.malignant and n.short_axis_mm < 8)
    assert kinds["reactive"] > 50 and kinds["calcified"] > 20 and kinds["enlarged_benign"] > 20
    assert small_malignant > 10
    assert any(d.granulomatous for d in _cohort())


def test_node_count_of_a_station_does_not_depend_on_its_disease() -> None:
    """Metastases grow in existing nodes: involved and uninvolved stations hold the same number of nodes."""
    counts: dict[bool, list[int]] = {True: [], False: []}
    for d in _cohort():
        per_station = Counter(n.station for n in d.nodes)
        for station, count in per_station.items():
            counts[station in d.malignant_stations].append(count)
    involved, other = np.asarray(counts[True]), np.asarray(counts[False])
    assert len(involved) > 200
    assert abs(involved.mean() - other.mean()) < 0.1, (involved.mean(), other.mean())
    assert set(np.unique(involved)) <= set(np.unique(other))
