"""Operating thresholds: the staging rule stages the most validation patients right from their N stage
alone, picks the widest of equally good intervals, and agrees with the N-stage rules of the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from nstage.analysis.nrules import stage, station_category
from nstage.errors import InputError
from nstage.stations import load_stations
from nstage.training.thresholds import (
    category_maxima,
    operating_point,
    staged_at,
    staging_inputs,
    staging_threshold,
)
from nstage.training.train import choose_threshold, prepare
from tests.training.test_classifier_training import TINY, fake_cases

NAMES = [s.station for s in load_stations()]


def test_staged_at_takes_the_highest_called_category() -> None:
    maxima = np.array([[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.9, 0.6, 0.1], [0.9, 0.9, 0.7]])
    assert staged_at(maxima, 0.5).tolist() == [0, 1, 2, 3]
    assert staged_at(maxima, 0.05).tolist() == [3, 3, 3, 3]
    assert staged_at(maxima, 0.95).tolist() == [0, 0, 0, 0]


def test_category_maxima_stage_as_the_rules_do() -> None:
    rng = np.random.default_rng(4)
    for side in "RL":
        for _ in range(20):
            p = rng.random(len(NAMES)) ** 3
            t = float(rng.uniform(0.2, 0.8))
            level = int(staged_at(category_maxima(p, NAMES, side)[None], t)[0])
            expected = stage([s for s, v in zip(NAMES, p) if v >= t], side).tnm8
            assert f"N{level}" == expected
            assert all(category_maxima(p, NAMES, side)[int(station_category(s, side)[1]) - 1] >= v for s, v in zip(NAMES, p))


def test_staging_threshold_stages_the_most_patients_right() -> None:
    # N0 patients whose highest benign station reads up to 0.3, N2 patients whose N2 station reads 0.4 or more:
    # every threshold in (0.3, 0.4] stages all of them right; one at a stated specificity need not
    n0 = np.array([[0.05, 0.30, 0.02], [0.10, 0.20, 0.01], [0.02, 0.25, 0.05]])
    n2 = np.array([[0.2, 0.40, 0.05], [0.05, 0.7, 0.1], [0.3, 0.55, 0.02]])
    maxima, levels = np.vstack([n0, n2]), np.array([0, 0, 0, 2, 2, 2])
    t = staging_threshold(maxima, levels)
    assert 0.30 < t <= 0.40
    assert np.mean(staged_at(maxima, t) == levels) == 1.0
    logit = np.log([0.3, 0.4]) - np.log1p(-np.array([0.3, 0.4]))
    assert np.log(t / (1 - t)) == pytest.approx(logit.mean())  # the logit midpoint of the interval


def test_staging_threshold_prefers_the_widest_interval_among_equals() -> None:
    # four patients read by their N1 maximum: 3 of 4 staged right in (0.1, 0.3] and in (0.55, 0.6], fewer elsewhere
    maxima = np.array([[0.6, 0.01, 0.01], [0.55, 0.01, 0.01], [0.3, 0.01, 0.01], [0.1, 0.01, 0.01]])
    levels = np.array([1, 0, 1, 0])
    grid = np.linspace(0.005, 0.995, 199)
    best = max(np.mean(staged_at(maxima, g) == levels) for g in grid)
    t = staging_threshold(maxima, levels)
    assert best == 0.75 and np.mean(staged_at(maxima, t) == levels) == best
    assert 0.1 < t <= 0.3  # the wider of the two best intervals in logit space


def test_staging_threshold_calls_nothing_only_when_that_is_strictly_best() -> None:
    n0 = np.array([[0.4, 0.3, 0.2], [0.5, 0.1, 0.1]])
    assert staging_threshold(n0, np.array([0, 0])) > 0.5
    mixed = np.vstack([n0, [[0.45, 0.1, 0.1]]])  # an N1 patient: calling nothing stages 2 of 3, (0.4, 0.45] too
    t = staging_threshold(mixed, np.array([0, 0, 1]))
    assert 0.4 < t <= 0.45


def test_staging_threshold_without_cases_is_neutral() -> None:
    assert staging_threshold(np.zeros((0, 3)), np.zeros(0)) == 0.5


def test_choose_threshold_follows_the_config_and_refuses_unknown_rules() -> None:
    cases = fake_cases(12, seed=2)
    tcfg = dict(TINY["training"])
    ex = prepare(cases, tcfg)
    probs = [np.where(c.truth() > 0, 0.7, 0.1) + 0.01 * np.arange(c.truth().size) / 17 for c in cases]
    maxima, levels = staging_inputs(probs, cases)
    assert levels.tolist() == [int(c.case.n_tnm8[1]) for c in cases]
    assert np.array_equal(maxima, [category_maxima(p, c.stations, c.case.tumour_side) for p, c in zip(probs, cases)])
    t = choose_threshold({**tcfg, "threshold": "staging"}, probs, ex, (maxima, levels), False)
    assert 0.27 < t <= 0.7  # between the highest benign and the lowest malignant station: every case staged right
    assert choose_threshold({**tcfg, "threshold": 0.42}, probs, ex, (maxima, levels), False) == 0.42
    with pytest.raises(InputError, match="training.threshold"):
        choose_threshold({**tcfg, "threshold": "best"}, probs, ex, (maxima, levels), False)
    op = operating_point(probs, ex, maxima, levels, t, supervised=False)
    assert op["validation_n_stage_accuracy"] == 1.0 and op["validation_benign_specificity"] == 1.0
    assert op["validation_cases"] == 12
    # weak: the benign stations are those of the groups the N stage calls negative, not the labelled ones
    weak_negatives = sum(len({i for g, target in e.weak.groups if not target for i in g}) for e in ex)
    labelled_negatives = sum(int((c.truth() == 0).sum()) for c in cases)
    assert op["validation_benign_stations"] == weak_negatives < labelled_negatives
    assert operating_point(probs, ex, maxima, levels, t, supervised=True)["validation_benign_stations"] == labelled_negatives


def test_an_unknown_threshold_rule_is_refused_before_training(tmp_path) -> None:
    from nstage.training.train import CHECKPOINT, train

    cases = fake_cases(8, seed=3)
    cfg = {**TINY, "training": {**TINY["training"], "threshold": "best"}}
    with pytest.raises(InputError, match="training.threshold"):
        train(cases[:6], cases[6:], cfg, out_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()  # no epoch was trained
