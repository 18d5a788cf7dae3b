"""The classifier benchmark's target lines: a target met exactly (shares of whole counts) reads as met."""

from __future__ import annotations

from bench.classifier.classifier_bench import targets


def _method(auroc: float, n_acc: float, sens: float = 0.6, spec: float = 0.95, roc_sens: float = 0.7) -> dict:
    return {"station": {"auroc": {"value": auroc}, "sensitivity": {"value": sens}, "specificity": {"value": spec},
                        "sensitivity_at_specificity_0.90": roc_sens}, "n_stage": {"accuracy": n_acc}}


def _evaluation(weak_n: float, best_baseline_n: float, weak_auroc: float = 0.88) -> dict:
    return {"methods": {"weak": _method(weak_auroc, weak_n), "supervised": _method(0.90, 0.6),
                        "suvmax": _method(0.80, best_baseline_n), "combined": _method(0.83, 0.1)}}


def test_an_n_stage_gain_of_exactly_ten_points_is_met():
    lines = targets(_evaluation(22 / 60, 16 / 60))  # 0.3667 - 0.2667: 0.0999999... in floating point
    assert "+0.100, met" in lines[-1]


def test_a_gain_below_ten_points_is_not_met():
    lines = targets(_evaluation(21 / 60, 16 / 60))
    assert lines[-1].endswith("**not met**")


def test_auroc_target_names_the_best_baseline():
    lines = targets(_evaluation(0.5, 0.2, weak_auroc=0.89))
    assert lines[0].startswith("- AUROC >= best baseline (combined 0.830) + 0.05: 0.890, met")
    assert "96.7%" not in lines[1] and "98.9%, met" in lines[1]


def test_pooled_cohorts_sum_their_patients_and_choose_one_threshold_on_all():
    import numpy as np

    from bench.classifier.classifier_bench import pooled

    def cohort(right: int, wrong: int) -> dict:
        return {"cases": right + wrong, "methods": {"weak": {"n_stage": {"confusion": {"N0": {"N0": right, "N2": wrong}}}}}}

    evaluations = {"a": cohort(44, 16), "b": cohort(27, 93), "c": cohort(99, 1)}
    # category maxima (N1, N2, N3) and TNM 8 levels: patient a1 is N2 above 0.6, b1 N0 (its 0.4 a false N1)
    staging = [(np.array([[0.1, 0.7, 0.0]]), np.array([2])), (np.array([[0.4, 0.0, 0.0]]), np.array([0]))]
    p = pooled(evaluations, ["a", "b"], staging)
    assert p["patients"] == 180 and p["cohorts"] == ["a", "b"]
    weak = p["n_stage"]["weak"]
    assert weak["right"] == 71 and abs(weak["accuracy"] - 71 / 180) < 1e-12  # not the mean of 0.733 and 0.225
    assert weak["ci95"][0] < 71 / 180 < weak["ci95"][1]
    best = p["shipped_best_threshold_on_pooled"]
    assert best["accuracy"] == 1.0 and 0.4 < best["threshold"] <= 0.7  # both staged right only between 0.4 and 0.7
