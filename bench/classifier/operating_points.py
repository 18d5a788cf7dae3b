"""The station classifier at its named operating points on fresh held-out cohorts, over training seeds (issue 42).

  python -m bench.classifier.operating_points --held-out NAME=COHORT_DIR [...] --model NAME=MODELS_DIR [...] [--out bench/classifier/operating_points]

Each held-out cohort is read through the training cache with registered station maps (as deployed: what is
not cached yet is registered and cached first; a study whose registration fails is a refusal). Per model
and cohort: station AUROC with a bootstrap interval by patient, sensitivity and specificity at every named
operating point of the model, the N stage (TNM 8) at `staging` and at `station` with Wilson intervals,
and the AUROC difference to the SUVmax rule with a paired bootstrap-by-patient interval. The N stage reads
the tumour side found on the images (the deployment path); the network's inputs read the cohort's side
(the training cache's), and the page counts the studies where the two differ. Models named `seed*` are
summarised as the recipe: mean and range over them. The four reader rules stand beside.

Beside the rules' points, two readings of the seed paper's point (specificity 0.90) that use the held-out
truth, so what bounds the `station` target is measured, not argued:
- the `station` point's specificity split by kind of benign station: those the N stage says are benign (what
  the rule is chosen on, out of fold) and the benign stations of N-positive groups (which it never sees);
- an oracle: the threshold read on the held-out stations themselves at specificity 0.90, and the sensitivity
  it gives: no threshold of that model or reader rule does better on that cohort.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine
from nstage.training.metrics import auroc, binary_figures, nstage_metrics, station_metrics

ROOT = Path(__file__).resolve().parents[2]
PAPER = {"sensitivity": 0.72, "specificity": 0.90, "station_accuracy": 0.88, "n_stage_accuracy": 0.63}
TARGETS = {"station_sensitivity": 0.72, "station_specificity": 0.90, "auroc_gain_over_suvmax": 0.03, "n_stage_accuracy": 0.70}
N_BOOT = 1000
log = logging.getLogger("bench.classifier.operating_points")


def paired_auroc_gain(scores: list[np.ndarray], reference: list[np.ndarray], truth: list[np.ndarray], n_boot: int = N_BOOT,
                      seed: int = 0) -> dict[str, Any]:
    """AUROC(scores) - AUROC(reference) on the same stations, with a 95 % interval from resampling patients."""
    def gain(idx: np.ndarray) -> float:
        t = np.concatenate([truth[i] for i in idx])
        return auroc(np.concatenate([scores[i] for i in idx]), t) - auroc(np.concatenate([reference[i] for i in idx]), t)

    rng = np.random.default_rng(seed)
    boots = np.array([gain(rng.integers(0, len(truth), len(truth))) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"value": gain(np.arange(len(truth))), "ci95": [float(lo), float(hi)]}


def n_stage_figures(cases: list, calls: list[np.ndarray], rules: str = "tnm") -> dict[str, Any]:
    """N-stage accuracy (TNM 8) with the side found on the images (unknown side: "N+", never right)."""
    from nstage.analysis.nrules import stage

    pred = [stage([s for s, v in zip(c.stations, k) if v], c.tumour_side_found, rules).tnm8 for c, k in zip(cases, calls)]
    return nstage_metrics(pred, [c.case.n_tnm8 for c in cases])


def oracle_at_specificity(scores: list[np.ndarray], truth: list[np.ndarray], specificity: float = PAPER["specificity"]) -> dict[str, float]:
    """The threshold read on the held-out truth at `specificity` (the lowest that leaves that share of the benign
    stations below it) and the sensitivity there: the best any threshold of these scores does (an oracle)."""
    from nstage.training.thresholds import specificity_threshold

    s, t = np.concatenate(scores).astype(float), np.concatenate(truth).astype(bool)
    thr = specificity_threshold(s[~t], specificity)
    return {"threshold": thr, "sensitivity": float(np.mean(s[t] >= thr)), "specificity": float(np.mean(s[~t] < thr))}


def benign_by_kind(cases: list, probs: list[np.ndarray], threshold: float, rules: str = "tnm") -> dict[str, Any]:
    """Specificity at `threshold` of the benign stations the N stage says are benign (the weak rule's set: groups the
    record's N stage calls negative) and of the other benign stations (in N-positive groups), with their counts."""
    from nstage.training.weak_labels import weak_targets

    known, other = [], []
    for c, p in zip(cases, probs):
        t = c.truth().astype(bool)
        negative = np.zeros(t.size, bool)
        for idx, target in weak_targets(c.stations, c.case.tumour_side, c.case.n_tnm8, rules=rules).groups:
            negative[idx] = not target
        known.append(p[negative & ~t])
        other.append(p[~negative & ~t])
    out = {}
    for name, part in (("said_benign", known), ("in_positive_groups", other)):
        v = np.concatenate(part)
        out[name] = {"stations": int(v.size), "specificity": float(np.mean(v < threshold)) if v.size else float("nan")}
    return out


def model_figures(cases: list, probs: list[np.ndarray], thresholds: dict[str, float], suvmax: list[np.ndarray]) -> dict[str, Any]:
    """Every figure of one model on one cohort."""
    truth = [c.truth() for c in cases]
    t_all = np.concatenate(truth).astype(bool)
    p_all = np.concatenate(probs)
    staging_calls = [p >= thresholds["staging"] for p in probs]
    out: dict[str, Any] = {"auroc": station_metrics(probs, staging_calls, truth, N_BOOT, 0)["auroc"],
                           "auroc_gain_over_suvmax": paired_auroc_gain(probs, suvmax, truth), "points": {}}
    for name, t in thresholds.items():
        calls = [p >= t for p in probs]
        out["points"][name] = {"threshold": t, **binary_figures(p_all >= t, t_all), "n_stage": n_stage_figures(cases, calls),
                               "benign_by_kind": benign_by_kind(cases, probs, t)}
    out["oracle_at_paper_specificity"] = oracle_at_specificity(probs, truth)
    return out


def baseline_figures(cases: list, rules: str = "tnm") -> dict[str, Any]:
    from nstage.training.evaluate import baselines

    truth = [c.truth() for c in cases]
    t_all = np.concatenate(truth).astype(bool)
    out = {}
    for m in baselines(cases, rules):
        out[m.name] = {"auroc": station_metrics(m.scores, [np.asarray(k, bool) for k in m.calls], truth, N_BOOT, 0)["auroc"],
                       "oracle_at_paper_specificity": oracle_at_specificity([np.asarray(x, float) for x in m.scores], truth),
                       **binary_figures(np.concatenate(m.calls).astype(bool), t_all), "n_stage": n_stage_figures(cases, m.calls, rules)}
    return out


def refusals(cohort: Path, cases: list) -> dict[str, Any]:
    """Registration outcomes of the cohort's studies (the cache keeps every registration.json)."""
    from nstage.training.cache import default_cache_dir, registration_file
    from nstage.training.cohort import read_cohorts

    status: dict[str, int] = {}
    refused, suspect = [], []
    for c in read_cohorts([cohort]):
        f = registration_file(default_cache_dir(c), c)
        if not f.is_file():
            status["not registered"] = status.get("not registered", 0) + 1
            continue
        r = json.loads(f.read_text())
        status[r["status"]] = status.get(r["status"], 0) + 1
        if r["status"] == "failed":
            refused.append({"case": c.case, "reasons": r["reasons"]})
        elif r["status"] == "suspect":
            suspect.append({"case": c.case, "reasons": r["reasons"]})
    sides = {"found_right": sum(c.tumour_side_found == c.case.tumour_side for c in cases),
             "found_wrong": sum(c.tumour_side_found not in (None, c.case.tumour_side) for c in cases),
             "not_found": sum(c.tumour_side_found is None for c in cases)}
    return {"status": status, "refused": refused, "suspect": suspect, "tumour_side": sides}


def summarise_seeds(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and range over the models named seed*: AUROC, its gain, and each point's figures."""
    seeds = {k: v for k, v in models.items() if k.startswith("seed")}
    if not seeds:
        return {}

    def spread(values: list[float]) -> dict[str, Any]:
        a = np.array(values, float)
        return {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}

    first = next(iter(seeds.values()))
    out: dict[str, Any] = {"auroc": spread([m["auroc"]["value"] for m in seeds.values()]),
                           "auroc_gain_over_suvmax": spread([m["auroc_gain_over_suvmax"]["value"] for m in seeds.values()]),
                           "points": {}}
    for name in first["points"]:
        per = [m["points"][name] for m in seeds.values() if name in m["points"]]
        out["points"][name] = {k: spread([p[k] for p in per]) for k in ("threshold", "sensitivity", "specificity", "accuracy")}
        out["points"][name]["n_stage_accuracy"] = spread([p["n_stage"]["accuracy"] for p in per])
    return out


def run(held_out: dict[str, Path], models: dict[str, Path], jobs: int = 2, build: bool = True) -> dict[str, Any]:
    from nstage.analysis.classifier.layout import find_model
    from nstage.analysis.classifier.settings import classifier_config
    from nstage.training.workflow import cached_cohort, predict_exported

    cfg = classifier_config()
    out: dict[str, Any] = {"machine": machine(), "paper": PAPER, "targets": TARGETS, "cohorts": {}}
    for name, cohort in held_out.items():
        cases = cached_cohort([cohort], "registration", cfg, jobs=jobs, build=build)
        suvmax = [np.array([c.uptake[s].suv_max for s in c.stations]) for c in cases]
        entry: dict[str, Any] = {"cohort": str(cohort.relative_to(ROOT) if cohort.is_relative_to(ROOT) else cohort),
                                 "patients": len(cases), "stations": int(sum(len(c.stations) for c in cases)),
                                 "malignant_stations": int(sum(int(c.truth().sum()) for c in cases)),
                                 "registration": refusals(cohort, cases), "baselines": baseline_figures(cases), "models": {}}
        for label, models_dir in models.items():
            model_file = find_model(models_dir)
            if model_file is None:
                raise SystemExit(f"error: no model in {models_dir}")
            probs, threshold, meta = predict_exported(model_file, cases)
            points = {n: float(p["threshold"]) for n, p in (meta.get("operating_points") or {"staging": {"threshold": threshold}}).items()}
            entry["models"][label] = {"version": meta["version"], "training_seed": meta["training"]["seed"],
                                      "out_of_fold": meta.get("operating_points") or meta.get("operating_point"),
                                      **model_figures(cases, probs, points, suvmax)}
        entry["recipe"] = summarise_seeds(entry["models"])
        out["cohorts"][name] = entry
    return out


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _ci(d: dict[str, Any]) -> str:
    return f"{_f(d['value'])} [{_f(d['ci95'][0])}, {_f(d['ci95'][1])}]"


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"# The station classifier at its operating points, on fresh held-out cohorts (issue 42)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; no GPU. `python -m bench.classifier.operating_points` "
             "(pre-registered in bench/classifier/classifier_experiments.md). Registered station maps; the N stage reads the tumour side found "
             "on the images. Seed paper (Engelson et al. 2026, patients): station sensitivity 0.72, specificity 0.90, accuracy 0.88; "
             "N-stage accuracy 0.63.", ""]
    for name, c in res["cohorts"].items():
        reg, side = c["registration"], c["registration"]["tumour_side"]
        lines += [f"## {name}", "",
                  f"{c['patients']} patients analysed ({c['cohort']}), {c['stations']} stations, {c['malignant_stations']} malignant. "
                  f"Registration: {', '.join(f'{k} {v}' for k, v in sorted(reg['status'].items()))}. Tumour side found right "
                  f"{side['found_right']}, wrong {side['found_wrong']}, not found {side['not_found']}.", "",
                  "| model | point | threshold | sens | spec | station acc | N-stage acc [95 % CI] (TNM 8) |", "|---|---|---|---|---|---|---|"]
        for label, mo in c["models"].items():
            for point, p in mo["points"].items():
                n = p["n_stage"]
                lines.append(f"| {label} ({mo['version']}) | {point} | {_f(p['threshold'])} | {_f(p['sensitivity'])} | {_f(p['specificity'])} | "
                             f"{_f(p['accuracy'])} | {_f(n['accuracy'])} [{_f(n['accuracy_ci95'][0])}, {_f(n['accuracy_ci95'][1])}] |")
        for label, b in c["baselines"].items():
            n = b["n_stage"]
            lines.append(f"| {label} (reader rule) | its rule | - | {_f(b['sensitivity'])} | {_f(b['specificity'])} | {_f(b['accuracy'])} | "
                         f"{_f(n['accuracy'])} [{_f(n['accuracy_ci95'][0])}, {_f(n['accuracy_ci95'][1])}] |")
        lines += ["", "| model | AUROC [95 % CI] | AUROC - SUVmax [95 % CI, paired by patient] |", "|---|---|---|"]
        for label, mo in c["models"].items():
            lines.append(f"| {label} | {_ci(mo['auroc'])} | {_ci(mo['auroc_gain_over_suvmax'])} |")
        for label, b in c["baselines"].items():
            lines.append(f"| {label} | {_ci(b['auroc'])} | - |")
        lines += ["", f"At the seed paper's specificity ({PAPER['specificity']:.2f}; its sensitivity {PAPER['sensitivity']:.2f}). The `station` "
                  "point's specificity on the benign stations the N stage says are benign (what it is chosen on, out of fold) and on the "
                  "benign stations of N-positive groups; and the oracle: the threshold read on this cohort's truth at specificity "
                  f"{PAPER['specificity']:.2f}, with the sensitivity it gives (no threshold does better).", "",
                  "| model | `station`: spec, said benign (n) | `station`: spec, in N-positive groups (n) | oracle threshold | oracle sens |",
                  "|---|---|---|---|---|"]
        for label, mo in c["models"].items():
            kinds = mo["points"].get("station", {}).get("benign_by_kind")
            said, other = (f"{_f(k['specificity'])} ({k['stations']})" for k in (kinds["said_benign"], kinds["in_positive_groups"])) if kinds else ("-", "-")
            o = mo["oracle_at_paper_specificity"]
            lines.append(f"| {label} | {said} | {other} | {_f(o['threshold'])} | {_f(o['sensitivity'])} |")
        for label, b in c["baselines"].items():
            o = b["oracle_at_paper_specificity"]
            lines.append(f"| {label} (reader rule's score) | - | - | {_f(o['threshold'])} | {_f(o['sensitivity'])} |")
        r = c.get("recipe")
        if r:
            lines += ["", f"The recipe over {r['auroc']['n']} training seeds (mean, range):", "",
                      f"- AUROC {_f(r['auroc']['mean'])} ({_f(r['auroc']['min'])}-{_f(r['auroc']['max'])}); gain over SUVmax "
                      f"{_f(r['auroc_gain_over_suvmax']['mean'])} ({_f(r['auroc_gain_over_suvmax']['min'])}-{_f(r['auroc_gain_over_suvmax']['max'])})"]
            for point, p in r["points"].items():
                lines.append(f"- {point}: sensitivity {_f(p['sensitivity']['mean'])} ({_f(p['sensitivity']['min'])}-{_f(p['sensitivity']['max'])}), "
                             f"specificity {_f(p['specificity']['mean'])} ({_f(p['specificity']['min'])}-{_f(p['specificity']['max'])}), "
                             f"N-stage accuracy {_f(p['n_stage_accuracy']['mean'])} ({_f(p['n_stage_accuracy']['min'])}-{_f(p['n_stage_accuracy']['max'])})")
        if reg["refused"]:
            lines += ["", "Refused (registration failed): " + "; ".join(f"{x['case']}: {' / '.join(x['reasons'])}" for x in reg["refused"])]
        lines.append("")
    return "\n".join(lines)


def _pairs(values: list[str]) -> dict[str, Path]:
    out = {}
    for v in values:
        name, _, path = v.partition("=")
        out[name] = Path(path).resolve()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", action="append", required=True, help="NAME=COHORT_DIR")
    p.add_argument("--model", action="append", required=True, help="NAME=MODELS_DIR (names seed*: the recipe's training seeds)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "classifier" / "operating_points")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cached-only", action="store_true", help="only the studies already registered and cached (no registration here)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    res = run(_pairs(a.held_out), _pairs(a.model), a.jobs, build=not a.cached_only)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    a.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
