"""Evaluation: 5-fold stratified cross-validation and held-out testing, with the SUV baselines beside.

Cross-validation strata: N stage (TNM 8) x number of positive stations (when station labels are
known). Each fold's training cases train the model as `nstage train` does (a validation share, or the
cross-fitted ensemble of training.ensemble_folds, for best epoch, calibration and decision threshold).
Per method: station accuracy / sensitivity / specificity / AUROC with case-bootstrap 95 % intervals,
N-stage accuracy and macro one-vs-rest sensitivity / specificity, exact McNemar tests of the weak
model against both SUV baselines (station calls and N-stage calls).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nstage.analysis.config import analysis_config
from nstage.analysis.nrules import stage
from nstage.training.cache import CachedCase
from nstage.training.metrics import (
    accuracy_interval,
    expected_calibration_error,
    mcnemar,
    nstage_metrics,
    reliability,
    roc_curve,
    sensitivity_at_specificity,
    station_metrics,
)
from nstage.training.splits import stratified_folds

log = logging.getLogger("nstage.training")
BASELINES = ("suvmax", "blood_pool", "ct_size", "combined")


@dataclass(frozen=True)
class MethodOutput:
    """Per case: station scores (higher = more suspicious) and calls of one method."""

    name: str
    scores: list[np.ndarray]
    calls: list[np.ndarray]


def combined_score(nodes: tuple, short_axis_mm: float) -> float:
    """A ranking score of the combined reader rule: visual grade + 1 when large (ties broken by the
    blood-pool ratio); calcified and ungraded nodes 0. With grades 4 / 3 the rule calls a station
    positive exactly when this reaches 4."""
    best = 0.0
    for n in nodes:
        if n.calcified or n.visual_grade is None:
            continue
        best = max(best, n.visual_grade + float(n.short_axis_mm >= short_axis_mm) + 0.01 * min(n.blood_pool_ratio or 0.0, 50.0))
    return best


def baselines(cases: list[CachedCase], rules: str = "tnm") -> list[MethodOutput]:
    """The four reader baselines exactly as the pipeline runs them (nstage.analysis.baselines); the blood-pool
    and combined ones only when every case has a blood-pool figure. ROC scores: SUVmax; the baseline's measure /
    blood pool; the largest node short axis; the combined rule's score (combined_score)."""
    from nstage.analysis.baselines import blood_pool_baseline, combined_baseline, ct_size_baseline, suvmax_baseline

    def calls(result, c: CachedCase) -> np.ndarray:
        return np.array([result.calls[s] for s in c.stations], bool)

    def nodes(c: CachedCase, s: str) -> tuple:
        return c.nodes[s].nodes if s in c.nodes else ()

    cfg = analysis_config()["baselines"]
    out = [MethodOutput("suvmax", [np.array([c.uptake[s].suv_max for s in c.stations]) for c in cases],
                        [calls(suvmax_baseline(c.uptake, c.case.tumour_side, rules), c) for c in cases])]
    pooled = all(c.blood_pool_suv is not None for c in cases)
    if pooled:
        measure = str(cfg["blood_pool"].get("measure", "suv_max"))
        out.append(MethodOutput("blood_pool", [np.array([getattr(c.uptake[s], measure) / c.blood_pool_suv for s in c.stations]) for c in cases],
                                [calls(blood_pool_baseline(c.uptake, c.blood_pool_suv, c.case.tumour_side, rules), c) for c in cases]))
    out.append(MethodOutput("ct_size", [np.array([max((n.short_axis_mm for n in nodes(c, s)), default=0.0) for s in c.stations]) for c in cases],
                            [calls(ct_size_baseline(c.uptake, c.nodes, c.case.tumour_side, rules), c) for c in cases]))
    if pooled:
        t = float(cfg["combined"]["short_axis_mm"])
        out.append(MethodOutput("combined", [np.array([combined_score(nodes(c, s), t) for s in c.stations]) for c in cases],
                                [calls(combined_baseline(c.uptake, c.nodes, c.case.tumour_side, rules), c) for c in cases]))
    return out


def n_stages(cases: list[CachedCase], calls: list[np.ndarray], rules: str = "tnm") -> list[str]:
    return [stage([s for s, v in zip(c.stations, k) if v], c.case.tumour_side, rules).tnm8 for c, k in zip(cases, calls)]


def summarise(cases: list[CachedCase], methods: list[MethodOutput], n_boot: int, seed: int, rules: str = "tnm") -> dict[str, Any]:
    """All figures of every method, and McNemar tests of the first method ("weak") against the baselines."""
    truth = [c.truth() for c in cases]
    nst = [c.case.n_tnm8 for c in cases]
    out: dict[str, Any] = {"cases": len(cases), "stations": int(sum(len(t) for t in truth)),
                           "positive_stations": int(sum(int(t.sum()) for t in truth)), "methods": {}, "mcnemar": {}}
    stages = {}
    for m in methods:
        stages[m.name] = n_stages(cases, m.calls, rules)
        out["methods"][m.name] = {"station": station_metrics(m.scores, [np.asarray(k, bool) for k in m.calls], truth, n_boot, seed),
                                  "n_stage": nstage_metrics(stages[m.name], nst)}
        p, y = np.concatenate(m.scores), np.concatenate(truth)
        out["methods"][m.name]["station"]["sensitivity_at_specificity_0.90"] = sensitivity_at_specificity(p, y, 0.90)
        if m.name not in BASELINES:  # a model's probabilities: how well calibrated
            out["methods"][m.name]["calibration"] = {"ece": expected_calibration_error(p, y), "bins": reliability(p, y)}
    weak = methods[0]
    right_weak = np.concatenate([np.asarray(k, bool) == t.astype(bool) for k, t in zip(weak.calls, truth)])
    for m in methods[1:]:
        if m.name not in BASELINES:
            continue
        right = np.concatenate([np.asarray(k, bool) == t.astype(bool) for k, t in zip(m.calls, truth)])
        out["mcnemar"][f"{weak.name}_vs_{m.name}"] = {
            "station": mcnemar(right_weak, right),
            "n_stage": mcnemar(np.array(stages[weak.name]) == np.array(nst), np.array(stages[m.name]) == np.array(nst))}
    if "blood_pool" not in {m.name for m in methods}:
        out["mcnemar"]["blood_pool"] = "not tested: the blood-pool SUV is missing for some cases (station source without registration)"
    return out


def cross_validate(cases: list[CachedCase], cfg: dict[str, Any], epochs: int | None = None,
                   work: Path | None = None) -> tuple[list[MethodOutput], list[dict[str, Any]]]:
    """Out-of-fold weak and supervised predictions over k stratified folds (baselines need no training). Each
    fold's model is trained as `nstage train` trains (one network, or the config's cross-fitted ensemble
    inside the fold's training cases)."""
    from nstage.analysis.classifier.settings import patch_settings
    from nstage.training.ensemble import fit
    from nstage.training.train import predict, prepare

    ecfg, tcfg = cfg["evaluation"], cfg["training"]
    k, seed = int(ecfg["folds"]), int(ecfg["seed"])
    size = patch_settings(cfg)
    n = len(cases)
    probs = {"weak": [np.zeros(0)] * n, "supervised": [np.zeros(0)] * n}
    calls = {"weak": [np.zeros(0, bool)] * n, "supervised": [np.zeros(0, bool)] * n}
    folds_info = []
    for f, test in enumerate(stratified_folds(cases, k, seed)):
        rest = np.setdiff1d(np.arange(n), test)
        info: dict[str, Any] = {"fold": f + 1, "train": len(rest), "test": len(test)}
        for variant in ("weak", "supervised"):
            fitted = fit([cases[i] for i in rest], cfg, variant == "supervised", work / f"fold{f + 1}-{variant}" if work else None,
                         True, epochs, split_seed=seed + f)
            p = predict(fitted.model, prepare([cases[i] for i in test], tcfg), size)
            for i, pi in zip(test, p):
                probs[variant][i], calls[variant][i] = pi, pi >= fitted.threshold
            epochs_kept = [m["best_epoch"] for m in fitted.members]
            info[variant] = {"threshold": fitted.threshold, "members": len(fitted.members), "best_epoch": epochs_kept}
            log.info("fold %d %s: threshold %.3f, best epoch(s) %s", f + 1, variant, fitted.threshold, epochs_kept)
        folds_info.append(info)
    methods = [MethodOutput(v, probs[v], calls[v]) for v in ("weak", "supervised")]
    return methods, folds_info


def _square_plot(path: Path, title: str, xlabel: str, ylabel: str, legend: str,
                 curves: list[tuple[np.ndarray, np.ndarray, str, dict[str, Any]]]) -> None:
    """One unit-square plot of labelled curves with the diagonal for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])  # 20 colours: no two methods share one
    for x, y, label, style in curves:
        ax.plot(x, y, label=label, **style)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc=legend, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def roc_png(cases: list[CachedCase], methods: list[MethodOutput], path: Path, title: str) -> None:
    """One ROC plot of every method's station scores."""
    _square_plot(path, title, "1 - specificity", "sensitivity", "lower right", roc_curves(cases, methods))


def roc_curves(cases: list[CachedCase], methods: list[MethodOutput]) -> list[tuple[np.ndarray, np.ndarray, str, dict[str, Any]]]:
    """(fpr, tpr, label, style) of each method; methods with the same scores (one model at two thresholds) share one."""
    from nstage.training.metrics import auroc

    truth = np.concatenate([c.truth() for c in cases])
    curves, names, seen = [], [], {}
    for m in methods:
        s = np.concatenate(m.scores)
        key = s.tobytes()
        if key in seen:  # the same scores at another threshold: one curve, both names
            names[seen[key]].append(m.name)
            continue
        seen[key] = len(curves)
        names.append([m.name])
        fpr, tpr = roc_curve(s, truth)
        curves.append((fpr, tpr, f"(AUROC {auroc(s, truth):.3f})", {}))
    return [(x, y, f"{' = '.join(n)} {label}", st) for (x, y, label, st), n in zip(curves, names)]


def reliability_png(summary: dict[str, Any], path: Path, title: str) -> None:
    """Reliability diagram of every model, marker area by the bin's station count, and below it the
    first model's stations per bin (a bin of three stations can only read 0, 1/3, 2/3 or 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, seen = [], set()
    for name, m in summary["methods"].items():
        key = repr(m.get("calibration", {}).get("bins"))
        if "calibration" in m and key not in seen:  # not the same probabilities again at another threshold
            seen.add(key)
            models.append((name, m["calibration"]))
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(8, 6.4), dpi=110, height_ratios=[5, 1.4], sharex=True)
    ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])
    most = max((b["count"] for _, c in models for b in c["bins"]), default=1)
    for name, cal in models:
        x = np.array([b["mean_probability"] for b in cal["bins"]])
        y = np.array([b["observed"] for b in cal["bins"]])
        n = np.array([b["count"] for b in cal["bins"]], float)
        line, = ax.plot(x, y, lw=1, label=f"{name} (ECE {cal['ece']:.3f})")
        ax.scatter(x, y, s=6 + 120 * np.sqrt(n / most), color=line.get_color(), alpha=0.8, zorder=3)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(ylabel="observed malignant fraction", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title="marker area: stations in the bin", title_fontsize=7)
    if models:
        name, cal = models[0]
        lows = [b["low"] for b in cal["bins"]]
        widths = [b["high"] - b["low"] for b in cal["bins"]]
        counts = [b["count"] for b in cal["bins"]]
        hist.bar(lows, counts, width=widths, align="edge", color="lightgrey", edgecolor="grey", log=True)
        for lo, w, c in zip(lows, widths, counts):
            hist.text(lo + w / 2, c, str(c), ha="center", va="bottom", fontsize=7)
        hist.set_ylim(0.8, max(counts) * 4)
        hist.set_ylabel(f"stations\n({name})", fontsize=8)
    hist.set_xlabel("mean predicted probability (bin)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(d: dict[str, Any]) -> str:
    v, (lo, hi) = d["value"], d["ci95"]
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown_report(summary: dict[str, Any], title: str, roc_file: str, notes: list[str]) -> str:
    """The report: station table, N-stage table, McNemar tests."""
    lines = [f"# {title}", "", *notes, "",
             f"{summary['cases']} cases, {summary['stations']} stations ({summary['positive_stations']} malignant). "
             "Station figures pooled over all stations; 95 % intervals from 1000 case-level bootstrap resamples.", "",
             "## Stations", "", "| method | accuracy | sensitivity | specificity | AUROC |", "|---|---|---|---|---|"]
    for name, m in summary["methods"].items():
        s = m["station"]
        lines.append(f"| {name} | {_fmt(s['accuracy'])} | {_fmt(s['sensitivity'])} | {_fmt(s['specificity'])} | {_fmt(s['auroc'])} |")
    cal = {n: m["calibration"]["ece"] for n, m in summary["methods"].items() if "calibration" in m}
    if cal:
        lines += ["", "Expected calibration error (10 bins): " + ", ".join(f"{n} {v:.3f}" for n, v in cal.items())
                  + ". ![reliability](reliability.png)"]
        first = next(n for n, m in summary["methods"].items() if "calibration" in m)
        lines += ["", f"Stations per probability bin ({first}): "
                  + ", ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['count']}" for b in summary["methods"][first]["calibration"]["bins"])
                  + ". A bin of a few stations reads a noisy fraction."]
    lines += ["", f"![ROC]({roc_file})", "", "## N stage (TNM 8)", "",
              "| method | accuracy [95 % CI, Wilson] | macro sensitivity | macro specificity |", "|---|---|---|---|"]
    for name, m in summary["methods"].items():
        n = m["n_stage"]
        lo, hi = accuracy_interval(n["confusion"])
        lines.append(f"| {name} | {n['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {n['macro_sensitivity']:.3f} | {n['macro_specificity']:.3f} |")
    lines += ["", "## McNemar tests (exact, paired right/wrong calls)", "",
              "| comparison | level | A right, B wrong | A wrong, B right | p |", "|---|---|---|---|---|"]
    for name, t in summary["mcnemar"].items():
        if isinstance(t, str):
            lines.append(f"| {name} | - | - | - | {t} |")
            continue
        for level in ("station", "n_stage"):
            x = t[level]
            lines.append(f"| {name} | {level} | {x['a_right_b_wrong']} | {x['a_wrong_b_right']} | {x['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, cases: list[CachedCase], methods: list[MethodOutput], cfg: dict[str, Any], title: str,
                 notes: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """evaluation.json, report.md and roc.png in OUT_DIR."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ecfg = cfg["evaluation"]
    summary = summarise(cases, methods, int(ecfg["bootstrap"]), int(ecfg["seed"]), cfg["training"].get("rules", "tnm"))
    summary.update(extra or {})
    roc_png(cases, methods, out_dir / "roc.png", title)
    reliability_png(summary, out_dir / "reliability.png", title)
    (out_dir / "evaluation.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "report.md").write_text(markdown_report(summary, title, "roc.png", notes))
    return summary
