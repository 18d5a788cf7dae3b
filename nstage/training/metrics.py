"""Station and N-stage metrics: accuracy, sensitivity, specificity, AUROC (with case-level bootstrap
95 % intervals), N-stage accuracy (Wilson 95 % interval) and macro one-vs-rest sensitivity/specificity,
and exact McNemar tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, rankdata


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    scores, y = np.asarray(scores, float), np.asarray(y, int)
    pos, neg = int(y.sum()), int(y.size - y.sum())
    if pos == 0 or neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    scores, y = np.asarray(scores, float), np.asarray(y, int)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp, fp = np.cumsum(t)[last], np.cumsum(1 - t)[last]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def binary_figures(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred, y = np.asarray(pred, bool), np.asarray(y, bool)
    nan = float("nan")
    return {"accuracy": float((pred == y).mean()) if y.size else nan,
            "sensitivity": float(pred[y].mean()) if y.any() else nan,
            "specificity": float((~pred[~y]).mean()) if (~y).any() else nan}


def station_metrics(scores: list[np.ndarray], preds: list[np.ndarray], truth: list[np.ndarray], n_boot: int = 1000,
                    seed: int = 0) -> dict[str, dict[str, float]]:
    """Station figures pooled over cases, each with a 95 % interval from resampling cases."""
    def figures(idx: np.ndarray) -> dict[str, float]:
        s = np.concatenate([scores[i] for i in idx])
        p = np.concatenate([preds[i] for i in idx])
        t = np.concatenate([truth[i] for i in idx])
        return {**binary_figures(p, t), "auroc": auroc(s, t)}

    point = figures(np.arange(len(truth)))
    rng = np.random.default_rng(seed)
    boots = [figures(rng.integers(0, len(truth), len(truth))) for _ in range(n_boot)]
    out = {}
    for k, v in point.items():
        b = np.array([x[k] for x in boots], float)
        b = b[np.isfinite(b)]
        lo, hi = (np.percentile(b, [2.5, 97.5]) if b.size else (float("nan"), float("nan")))
        out[k] = {"value": v, "ci95": [float(lo), float(hi)]}
    return out


def nstage_metrics(pred: Sequence[str], truth: Sequence[str], classes: Sequence[str] = ("N0", "N1", "N2", "N3")) -> dict[str, object]:
    """Accuracy and macro one-vs-rest sensitivity / specificity (classes present in the truth)."""
    p, t = np.asarray(pred), np.asarray(truth)
    sens, spec = [], []
    for c in classes:
        if (t == c).any():
            sens.append(float((p[t == c] == c).mean()))
        if (t != c).any() and (t == c).any():
            spec.append(float((p[t != c] != c).mean()))
    confusion = {a: {b: int(((t == a) & (p == b)).sum()) for b in classes} for a in classes}
    return {"accuracy": float((p == t).mean()) if t.size else float("nan"),
            "accuracy_ci95": list(accuracy_interval(confusion)),
            "macro_sensitivity": float(np.mean(sens)) if sens else float("nan"),
            "macro_specificity": float(np.mean(spec)) if spec else float("nan"), "confusion": confusion}


def staged_right(confusion: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(patients staged right, patients) of an N-stage confusion matrix (truth -> prediction -> count)."""
    right = sum(row.get(stage, 0) for stage, row in confusion.items())
    return right, sum(sum(row.values()) for row in confusion.values())


def accuracy_interval(confusion: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Wilson 95 % interval of the N-stage accuracy from its confusion matrix (one call per patient, patients
    independent: what a case-level bootstrap approximates); NaNs without patients."""
    right, total = staged_right(confusion)
    if total == 0:
        return float("nan"), float("nan")
    ci = binomtest(right, total).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test on paired right/wrong calls: b = A right & B wrong, c = A wrong & B right."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if n01 + n10 == 0 else float(binomtest(n01, n01 + n10, 0.5).pvalue)
    return {"a_right_b_wrong": n01, "a_wrong_b_right": n10, "p_value": p}


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted probability and observed malignant fraction."""
    probs, y = np.asarray(probs, float), np.asarray(y, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(m.sum()),
                        "mean_probability": float(probs[m].mean()), "observed": float(y[m].mean())})
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Sum over bins of (bin share) x |mean probability - observed fraction|."""
    n = max(len(probs), 1)
    return float(sum(b["count"] / n * abs(b["mean_probability"] - b["observed"]) for b in reliability(probs, y, bins)))


def sensitivity_at_specificity(scores: np.ndarray, y: np.ndarray, specificity: float = 0.90) -> float:
    """The highest sensitivity of any threshold whose specificity is at least `specificity` (ROC read-off)."""
    fpr, tpr = roc_curve(scores, y)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0
