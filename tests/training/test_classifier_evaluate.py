"""The evaluation report: every method beside the four reader baselines, McNemar against each, calibration
error and the reliability and ROC figures; cross-validation scores every case out of fold."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from nstage.training.evaluate import MethodOutput, baselines, write_report
from nstage.training.metrics import expected_calibration_error, sensitivity_at_specificity
from tests.training.test_classifier_training import TINY, fake_cases


def test_report_has_every_baseline_mcnemar_and_calibration(tmp_path):
    cases = fake_cases(12)
    truth = [c.truth() for c in cases]
    perfect = [t * 0.9 + 0.05 for t in truth]
    methods = [MethodOutput("weak", perfect, [p >= 0.5 for p in perfect]), *baselines(cases)]
    assert [m.name for m in methods[1:]] == ["suvmax", "blood_pool", "ct_size", "combined"]
    summary = write_report(tmp_path, cases, methods, TINY, "test", [])
    assert set(summary["mcnemar"]) == {f"weak_vs_{b}" for b in ("suvmax", "blood_pool", "ct_size", "combined")}
    weak = summary["methods"]["weak"]
    assert weak["station"]["auroc"]["value"] == 1.0 and weak["station"]["sensitivity_at_specificity_0.90"] == 1.0
    assert weak["calibration"]["ece"] == pytest.approx(0.05, abs=1e-6)  # every station 0.05 from its truth
    assert "calibration" not in summary["methods"]["suvmax"]  # a rule's score is not a probability
    assert {p.name for p in tmp_path.iterdir()} == {"evaluation.json", "report.md", "roc.png", "reliability.png"}
    assert json.loads((tmp_path / "evaluation.json").read_text())["cases"] == 12
    per_bin = (tmp_path / "report.md").read_text().split("Stations per probability bin (weak")[1].split("\n")[0]
    counts = [int(n) for n in re.findall(r"\d\.\d-\d\.\d: (\d+)", per_bin)]
    assert sum(counts) == summary["stations"]  # every station is in one bin, and the report says how many


def test_sensitivity_at_specificity_and_ece():
    y = np.array([0] * 10 + [1] * 10)
    s = np.r_[np.arange(10) / 10.0, 0.85 + np.arange(10) / 100.0]
    s[9] = 0.95  # one negative above every positive
    assert sensitivity_at_specificity(s, y, 0.90) == pytest.approx(1.0)  # one false positive allowed: all positives
    assert sensitivity_at_specificity(s, y, 0.95) == pytest.approx(0.0)  # none allowed: no positive lies above 0.95
    assert expected_calibration_error(np.full(20, 0.5), y) == pytest.approx(0.0)
    assert expected_calibration_error(np.r_[np.zeros(10), np.ones(10)], y) == pytest.approx(0.0)
    assert expected_calibration_error(np.r_[np.ones(10), np.zeros(10)], y) == pytest.approx(1.0)


def test_n_stage_accuracy_interval_counts_the_diagonal_of_the_confusion_matrix():
    from nstage.training.metrics import accuracy_interval, nstage_metrics

    truth = ["N0"] * 30 + ["N2"] * 30
    pred = ["N0"] * 25 + ["N1"] * 5 + ["N2"] * 13 + ["N3"] * 17  # 38 of 60 right
    m = nstage_metrics(pred, truth)
    assert m["accuracy"] == pytest.approx(38 / 60)
    lo, hi = m["accuracy_ci95"]
    assert (lo, hi) == pytest.approx((0.5068, 0.7438), abs=1e-4)  # Wilson, 38 / 60
    assert accuracy_interval(m["confusion"]) == (lo, hi)
    lo2, hi2 = accuracy_interval({"N0": {"N0": 152, "N1": 88}})  # the same share of four times the patients
    assert lo < lo2 < 38 / 60 < hi2 < hi


def test_one_model_at_two_thresholds_is_one_roc_curve_naming_both():
    from nstage.training.evaluate import roc_curves

    cases = fake_cases(12)
    scores = [t * 0.6 + 0.2 for t in (c.truth() for c in cases)]
    methods = [MethodOutput("weak", scores, [p >= 0.5 for p in scores]),
               MethodOutput("weak_at_other_rule", scores, [p >= 0.1 for p in scores]), *baselines(cases)]
    labels = [c[2] for c in roc_curves(cases, methods)]
    assert labels[0].startswith("weak = weak_at_other_rule (AUROC 1.000")
    assert not any(lab.startswith("weak_at_other_rule") for lab in labels)
    assert labels[1].startswith("suvmax (")  # other scores keep their own curve


def test_cross_validation_scores_every_case_out_of_fold_as_nstage_train_trains():
    from nstage.training.evaluate import cross_validate
    from nstage.training.metrics import auroc

    cfg = copy.deepcopy(TINY)
    cfg["training"]["ensemble_folds"] = 2  # each outer fold trains a cross-fitted pair, as the shipped recipe would
    cases = fake_cases(16, seed=7)
    methods, folds = cross_validate(cases, cfg, epochs=1)
    assert [m.name for m in methods] == ["weak", "supervised"]
    assert sum(f["test"] for f in folds) == 16 and all(f["weak"]["members"] == 2 for f in folds)
    for m in methods:
        assert [s.size for s in m.scores] == [c.inputs.labels.size for c in cases]
        y = np.concatenate([c.truth() for c in cases])
        assert auroc(np.concatenate(m.scores), y) > 0.8  # scores sit with their own cases (hot stations rank first)
