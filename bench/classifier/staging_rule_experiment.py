"""Experiment (bench/classifier/classifier_experiments.md, pre-registered 2026-12-05 05:05 UTC): stage each patient by
the most probable N category under independent calibrated station probabilities, against the shipped
threshold rule; out of fold on the 150 training patients (decides) and on the held-out cohorts (reported).
Run: python -m bench.classifier.staging_rule_experiment (needs data/v2 with make model's checkpoints and the bench's caches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.classifier.classifier_bench import _cases, _config
from nstage.analysis.nrules import station_category

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "v2"
LEVELS = ("N0", "N1", "N2", "N3")


def stage_probabilities(probs: np.ndarray, stations: list[str], side: str, rules: str = "tnm") -> np.ndarray:
    """(4,) P(N0..N3) when each station is malignant independently with its probability (highest category wins)."""
    free = np.ones(3)  # P(no malignant station) in N1, N2, N3
    for p, s in zip(np.clip(np.asarray(probs, float), 0.0, 1.0), stations):
        free[int(station_category(s, side, rules)[1]) - 1] *= 1.0 - p
    n3 = 1.0 - free[2]
    n2 = free[2] * (1.0 - free[1])
    n1 = free[2] * free[1] * (1.0 - free[0])
    return np.array([free.prod(), n1, n2, n3])


def map_calls(probs: np.ndarray, stations: list[str], side: str, threshold: float, rules: str = "tnm") -> tuple[int, np.ndarray]:
    """The most probable level and station calls consistent with it: threshold calls at or below that category,
    and the most probable station of that category where none of it is called."""
    level = int(np.argmax(stage_probabilities(probs, stations, side, rules)))
    cat = np.array([int(station_category(s, side, rules)[1]) for s in stations])
    calls = (np.asarray(probs) >= threshold) & (cat <= level)
    if level > 0 and not calls[cat == level].any():
        idx = np.flatnonzero(cat == level)
        calls[idx[int(np.argmax(np.asarray(probs)[idx]))]] = True
    return level, calls


def threshold_level(probs: np.ndarray, stations: list[str], side: str, threshold: float, rules: str = "tnm") -> int:
    """The shipped rule (nstage.training.thresholds): the highest category with a station at or above the threshold."""
    from nstage.training.thresholds import category_maxima, staged_at

    return int(staged_at(category_maxima(probs, stations, side, rules)[None, :], threshold)[0])


def compare(cases: list, probs: list[np.ndarray], threshold: float) -> dict[str, object]:
    truth_levels = [int(c.case.n_tnm8[1]) for c in cases]
    thr_levels, map_levels, thr_calls, map_station_calls, truth = [], [], [], [], []
    for c, p in zip(cases, probs):
        side = c.case.tumour_side
        thr_levels.append(threshold_level(p, c.stations, side, threshold))
        lvl, calls = map_calls(p, c.stations, side, threshold)
        map_levels.append(lvl)
        thr_calls.append(np.asarray(p) >= threshold)
        map_station_calls.append(calls)
        t = c.truth()
        if t is not None:
            truth.append(t > 0)
    out: dict[str, object] = {"patients": len(cases),
                              "threshold_rule_right": int(np.sum(np.array(thr_levels) == truth_levels)),
                              "most_probable_rule_right": int(np.sum(np.array(map_levels) == truth_levels))}
    conf = np.zeros((4, 4), int)
    for t, m in zip(truth_levels, map_levels):
        conf[t, m] += 1
    out["most_probable_confusion_truth_rows"] = conf.tolist()
    conf = np.zeros((4, 4), int)
    for t, m in zip(truth_levels, thr_levels):
        conf[t, m] += 1
    out["threshold_confusion_truth_rows"] = conf.tolist()
    if len(truth) == len(cases):
        y = np.concatenate(truth)
        for name, calls in (("threshold", thr_calls), ("most_probable", map_station_calls)):
            k = np.concatenate(calls)
            out[f"{name}_station_sensitivity"] = round(float(k[y].mean()), 3)
            out[f"{name}_station_specificity"] = round(float((~k[~y]).mean()), 3)
    return out


def out_of_fold() -> tuple[list, list[np.ndarray], float]:
    """The ensemble members' out-of-fold probabilities on the 150 training patients (resumed from make model's checkpoints)."""
    import nstage.training.ensemble as ens

    cfg = _config({})
    cases = _cases([DATA / "train_small_s17000", DATA / "train_clinical_s17100"], "truth", cfg)
    seen: dict[str, object] = {}
    choose = ens.choose_threshold

    def capture(tcfg, oof, examples, staging, supervised):  # type: ignore[no-untyped-def]
        seen["oof"] = oof
        return choose(tcfg, oof, examples, staging, supervised)

    ens.choose_threshold = capture
    try:
        fitted = ens.fit(cases, cfg, out_dir=DATA / "checkpoint", resume=True)
    finally:
        ens.choose_threshold = choose
    return cases, seen["oof"], fitted.threshold  # type: ignore[return-value]


def main() -> None:
    from nstage.analysis.classifier.layout import find_model
    from nstage.training.workflow import predict_exported

    cases, oof, thr = out_of_fold()
    result: dict[str, object] = {"threshold": thr, "out_of_fold_150": compare(cases, oof, thr)}
    print(json.dumps(result, indent=1), flush=True)
    cfg = _config({})
    for name, root, source in (("heldout_small_s17200", DATA / "heldout_small_s17200", "truth"),
                               ("heldout_clinical_s17300", DATA / "heldout_clinical_s17300", "registration"),
                               ("heldout_clinical_s17500", DATA / "heldout_clinical_s17500", "registration")):
        held = _cases([root], source, cfg)
        probs, shipped_thr, _ = predict_exported(find_model(ROOT / "models"), held)
        result[name] = compare(held, probs, shipped_thr)
        print(name, json.dumps(result[name]), flush=True)
    (ROOT / "bench" / "classifier" / "staging_rule_experiment.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
