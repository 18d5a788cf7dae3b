"""Platt scaling's fit (nstage.training.platt; central: nstage.training.train.calibrate): on a weak loss whose optimum
lies inside a >= 0.05 but far from the start, both fits find it. Until 2026-12-08 both stopped on the bound: L-BFGS
where its line search first crossed it, the Newton fit after a first step clamped there (one member of every
federated run of the shipped recipe)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nstage.training.federated.calibration import pooled, site_terms
from nstage.training.platt import NewtonFit
from nstage.training.train import _loss_of, calibrate, prepare
from tests.training.test_classifier_training import TINY, fake_cases

POOLING = ("noisy_or", 4.0)


def _case() -> tuple[list[np.ndarray], list, dict]:
    tcfg = copy.deepcopy(TINY["training"])
    tcfg["pooling"] = "noisy_or"
    cases = fake_cases(20, seed=8)
    rng = np.random.default_rng(0)
    logits = [rng.normal(-2.0, 5.0, c.labels.size) + 6.0 * c.truth() for c in cases]  # overconfident raw logits
    return logits, prepare(cases, tcfg), tcfg


def _grid_optimum(logits: list[np.ndarray], examples: list, tcfg: dict) -> float:
    return min(float(_loss_of(logits, examples, False, 1.0, tcfg, a, b)) for a in np.linspace(0.05, 1.5, 59) for b in np.linspace(-6, 1, 71))


def test_the_central_and_the_federated_fit_reach_the_optimum_inside_the_bound():
    logits, examples, tcfg = _case()
    best = _grid_optimum(logits, examples, tcfg)
    a, b = calibrate(logits, examples, False, 1.0, tcfg)
    fit = NewtonFit()
    while not fit.done and fit.rounds < 12:
        split = [site_terms(logits[:7], examples[:7], fit.candidates, POOLING), site_terms(logits[7:], examples[7:], fit.candidates, POOLING)]
        fit.update(pooled(split), 1e-6)
    for point in ((a, b), fit.result):
        assert point[0] > 0.2  # both stopped at a = 0.05 before (loss 0.539 against 0.445)
        assert float(_loss_of(logits, examples, False, 1.0, tcfg, *point)) <= best + 1e-4
    assert fit.result == pytest.approx((a, b), abs=1e-3)


def test_on_the_bound_the_fit_still_moves_b():
    # an optimum on the bound: b is fitted there (the fit reached a = 0.05 before and kept the b of that step)
    tcfg = copy.deepcopy(TINY["training"])
    tcfg["pooling"] = "noisy_or"
    cases = fake_cases(20, seed=8)
    rng = np.random.default_rng(5)
    logits = [rng.normal(-4.0, 4.0, c.labels.size) + 5.0 * c.truth() for c in cases]
    examples = prepare(cases, tcfg)
    fit = NewtonFit()
    while not fit.done and fit.rounds < 12:
        fit.update(pooled([site_terms(logits, examples, fit.candidates, POOLING)]), 1e-6)
    assert fit.result[0] == pytest.approx(0.05)
    assert float(_loss_of(logits, examples, False, 1.0, tcfg, *fit.result)) <= _grid_optimum(logits, examples, tcfg) + 1e-4
