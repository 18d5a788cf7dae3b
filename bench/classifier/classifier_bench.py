"""Station classifier benchmark (issue 17): every model variant and the four reader baselines, side by side,
on held-out cohorts; training and inference throughput; classifier time per study.

  python -m bench.classifier.classifier_bench --train DIR [--train DIR] --held-out NAME=DIR:SOURCE [...] [--model models]

- Variants (VARIANTS, config overrides of config/classifier.json) are trained on the training cohorts
  (generator station maps) with the shipped config's seed and validation split; checkpoints and
  resumption under bench/work/classifier. "weak" is the shipped model (the --model folder, as
  `make model` exported it); the others are trained here.
- Held-out cohorts come from seeds never used in training, with their cached station maps (SOURCE:
  registration or truth); what is not cached yet is cached first (a registration takes about 20 s a
  clinical case; `python -m nstage.cli evaluate ... --stations registration` fills the same cache).
- Writes bench/classifier/<NAME>/ (report.md, roc.png, reliability.png, evaluation.json),
  bench/classifier/classifier.json and bench/classifier/classifier.md (with the seed paper's figures and the targets).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine
from nstage.training.metrics import accuracy_interval, staged_right

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "work" / "classifier"
VARIANTS: dict[str, dict[str, Any]] = {
    "weak_max": {"training.pooling": "max"},  # the seed paper's pooling
    "weak_lse": {"training.pooling": "lse"},
    "weak_max_per_station": {"training.pooling": "max", "model.patient_context": False},
    "weak_measurements_only": {"model.patches": False},
    "weak_single": {"training.ensemble_folds": 1},  # the shipped recipe as one network on a 75 / 25 split (up to 2.3.1)
    "supervised": {},  # same network and config, station labels: the upper bound
}
SPECIFICITY_ROW = "weak_at_specificity_rule"  # the shipped model's probabilities, called at the earlier threshold rule
TOLERANCE = 1e-9  # targets compare shares of whole counts: a difference of exactly 0.10 meets ">= + 0.10"
PAPER = {"station_accuracy": 0.88, "sensitivity": 0.72, "specificity": 0.90, "n_stage_accuracy": 0.63}
log = logging.getLogger("bench.classifier")


def _config(over: dict[str, Any]) -> dict[str, Any]:
    from nstage.analysis.classifier.settings import classifier_config

    cfg = copy.deepcopy(classifier_config())
    for key, value in over.items():
        section, name = key.split(".")
        cfg[section][name] = value
    return cfg


def _cases(roots: list[Path], source: str, cfg: dict[str, Any]):
    """The cohorts' cached cases; the cases not cached yet for this node reader and patch setting are cached
    first (cached station maps and registrations are reused)."""
    from nstage.training.workflow import cached_cohort

    return cached_cohort(roots, source, cfg, jobs=2)


def _shipped_validation(model_dir: Path, val_cases: list) -> tuple[float, float]:
    """The shipped (exported) model's validation group AUROC and the threshold the earlier rule would give it
    (operating_specificity of the stations the N stage says are benign). A cross-fitted ensemble carries both,
    read on its out-of-fold probabilities; a single network is read on the single-split validation cases."""
    from nstage.analysis.classifier.layout import METADATA, find_model
    from nstage.training.ensemble import group_auroc
    from nstage.training.thresholds import operating_threshold
    from nstage.training.train import prepare
    from nstage.training.workflow import predict_exported

    tcfg = _config({})["training"]
    model_file = find_model(model_dir)
    op = json.loads((model_file.parent / METADATA).read_text()).get("operating_point", {})
    if op.get("out_of_fold"):
        return float(op["validation_group_auroc"]), float(op["specificity_rule_threshold"])
    probs, _, _ = predict_exported(model_file, val_cases)
    val = prepare(val_cases, tcfg)
    return group_auroc(probs, val), operating_threshold(probs, val, False, float(tcfg["operating_specificity"]))


def train_variants(train_roots: list[Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train every variant as the shipped recipe trains (config ensemble_folds unless overridden); (models by
    name, training records)."""
    from nstage.training.ensemble import fit
    from nstage.training.splits import split_validation

    base = _config({})
    cases = _cases(train_roots, "truth", base)
    tr, va = split_validation(cases, np.arange(len(cases)), float(base["training"]["validation_fraction"]), int(base["training"]["seed"]))
    models, records = {}, {}
    for name, over in VARIANTS.items():
        cfg = _config(over)
        t0 = time.time()
        fitted = fit(cases, cfg, supervised=name == "supervised", out_dir=WORK / name, resume=True)
        seconds = time.time() - t0
        timing = WORK / name / "train_seconds.json"  # the first run's training time, kept when later runs resume
        if timing.is_file():
            seconds = float(json.loads(timing.read_text())["train_seconds"])
        else:
            timing.write_text(json.dumps({"train_seconds": seconds}))
        ms = fitted.members
        models[name] = (fitted, cfg)
        records[name] = {"overrides": over, "members": len(ms), "best_epoch": [m["best_epoch"] for m in ms], "threshold": fitted.threshold,
                         "calibration": [m["calibration"] for m in ms],
                         "validation_group_auroc": fitted.operating["validation_group_auroc"],
                         "validation_n_stage_accuracy": fitted.operating["validation_n_stage_accuracy"],
                         "train_seconds": round(seconds, 1), "studies_trained": sum(m["train_cases"] * len(m["history"]) for m in ms),
                         "train_cases": fitted.train_cases, "validation_cases": fitted.validation_cases}
        log.info("%s: %d member(s), best epochs %s, %.0f s", name, len(ms), records[name]["best_epoch"], seconds)
    records["_split"] = {"train": len(tr), "validation": len(va), "cases": len(cases), "folds": int(base["training"].get("ensemble_folds", 1))}
    records["_validation"] = [cases[i] for i in va]
    return models, records


def evaluate_held_out(name: str, root: Path, source: str, model_dir: Path, models: dict[str, Any],
                      specificity_threshold: float | None = None) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """All methods on one held-out cohort and the bounds of its data; writes bench/classifier/<name>/.
    Also returns the shipped model's staging inputs (category maxima, TNM 8 levels) for pooling cohorts."""
    from nstage.analysis.classifier.layout import find_model
    from nstage.analysis.classifier.settings import patch_settings
    from nstage.training.evaluate import MethodOutput, baselines, write_report
    from nstage.training.thresholds import staging_inputs
    from nstage.training.train import predict, prepare
    from nstage.training.workflow import predict_exported

    base = _config({})
    cases = _cases([root], source, base)
    probs, thr, meta = predict_exported(find_model(model_dir), cases)
    methods = [MethodOutput("weak", probs, [p >= thr for p in probs])]
    if specificity_threshold is not None:  # the same probabilities at the earlier rule's threshold
        methods.append(MethodOutput(SPECIFICITY_ROW, probs, [p >= specificity_threshold for p in probs]))
    for v, (fitted, cfg) in models.items():
        p = predict(fitted.model, prepare(cases, cfg["training"]), patch_settings(cfg))
        methods.append(MethodOutput(v, p, [x >= fitted.threshold for x in p]))
    methods += baselines(cases, base["training"].get("rules", "tnm"))
    notes = [f"Held-out cohort {root.name} ({len(cases)} cases), station maps: {source}. weak = the shipped model "
             f"({meta['name']} {meta['version']}: {meta['kind']}; trained on {meta['training_data']})."]
    staging = staging_inputs(probs, cases, str(base["training"].get("rules", "tnm")))
    limits = {**bounds(cases), "shipped_n_stage_accuracy_best_threshold_on_cohort": best_staging(*staging)}
    summary = write_report(ROOT / "bench" / "classifier" / name, cases, methods, base, f"Held-out: {name}", notes,
                           {"kind": "held-out", "source": source, "cohort": root.name, "bounds": limits})
    return summary, staging


def best_staging(maxima: np.ndarray, levels: np.ndarray) -> dict[str, float]:
    """The shipped model's N-stage accuracy (TNM 8) at the threshold that stages most of these patients right,
    chosen on them (optimistic: what its probabilities allow, not a method); from its staging inputs."""
    from nstage.training.thresholds import staged_at, staging_threshold

    t = staging_threshold(maxima, levels)  # the training rule, here on the held-out patients themselves
    return {"accuracy": float(np.mean(staged_at(maxima, t) == levels)), "threshold": t}


def pooled(evaluations: dict[str, dict[str, Any]], names: list[str], staging: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Several held-out cohorts as one: each method's N-stage accuracy over all their patients (confusion
    matrices summed, Wilson 95 % interval), and the shipped model's at the one threshold that stages most
    of them right, chosen on them."""
    methods = evaluations[names[0]]["methods"]
    out: dict[str, Any] = {"cohorts": names, "patients": sum(evaluations[n]["cases"] for n in names), "n_stage": {}}
    for m in methods:
        confusion: dict[str, dict[str, int]] = {}
        for n in names:
            for a, row in evaluations[n]["methods"][m]["n_stage"]["confusion"].items():
                for b, k in row.items():
                    confusion.setdefault(a, {}).setdefault(b, 0)
                    confusion[a][b] += k
        right, total = staged_right(confusion)
        out["n_stage"][m] = {"right": right, "accuracy": right / total, "ci95": list(accuracy_interval(confusion))}
    out["shipped_best_threshold_on_pooled"] = best_staging(np.concatenate([s[0] for s in staging]),
                                                           np.concatenate([s[1] for s in staging]))
    return out


def _logistic_cv(x: list[np.ndarray], y: list[np.ndarray], folds: int = 5, l2: float = 1e-3) -> np.ndarray:
    """Out-of-fold scores of an L2 logistic regression, folds by case (station labels: a supervised reader)."""
    import torch

    n = len(x)
    fold = np.arange(n) % folds
    out = [np.zeros(len(v)) for v in y]
    for f in range(folds):
        tr = [i for i in range(n) if fold[i] != f]
        xs = np.concatenate([x[i] for i in tr])
        mu, sd = xs.mean(axis=0), xs.std(axis=0) + 1e-6
        xt = torch.tensor((xs - mu) / sd, dtype=torch.float64)
        yt = torch.tensor(np.concatenate([y[i] for i in tr]), dtype=torch.float64)
        w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        for i in range(n):
            if fold[i] == f:
                out[i] = (torch.tensor((x[i] - mu) / sd, dtype=torch.float64) @ w + b).detach().numpy()
    return out


def bounds(cases: list) -> dict[str, float]:
    """What the data allow on a held-out cohort (readers of the generator's truth, or fully supervised on it)."""
    from nstage.training.metrics import auroc

    y = [c.truth() for c in cases]
    truth = [json.loads((c.case.study_dir.parent / "truth.json").read_text())["stations"] for c in cases]
    true_suv = np.concatenate([[t[s]["max_node_suv"] for s in c.stations] for c, t in zip(cases, truth)])
    true_size = np.concatenate([[t[s]["max_short_axis_mm"] for s in c.stations] for c, t in zip(cases, truth)])
    yy = np.concatenate(y)
    feats = _logistic_cv([c.inputs.features for c in cases], y)
    return {"true_hottest_node_uptake": auroc(true_suv, yy), "true_largest_node_short_axis": auroc(true_size, yy),
            "measured_features_logistic_supervised_cv": auroc(np.concatenate(feats), yy)}


def throughput(model_dir: Path, root: Path, studies: int) -> dict[str, Any]:
    """Classifier time per study as the pipeline calls it (inputs from the images + network; node reading is
    its own stage), torch on 2 threads, on studies of a held-out cohort with cached registered station maps."""
    import torch

    from nstage.analysis.classifier.slot import load_classifier
    from nstage.analysis.classifier.station_case import StationCase
    from nstage.ingest.study import load_study
    from nstage.training.cache import _station_file, default_cache_dir, load_cached
    from nstage.training.cohort import read_cohort

    torch.set_num_threads(2)
    clf = load_classifier(model_dir)
    base = _config({})
    from nstage.analysis.classifier.settings import patch_settings

    times = []
    for c in load_cached(read_cohort(root), "registration", patch_settings(base)):
        path = _station_file(default_cache_dir(c.case), c.case, "registration")
        study = load_study(c.case.study_dir)
        labels = np.load(path)["labels"]
        case = StationCase(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, labels, c.uptake, c.nodes,
                           c.blood_pool_suv, c.tumour_suv, c.case.tumour_side)
        t0 = time.perf_counter()
        clf.classify(case)
        times.append(time.perf_counter() - t0)
        if len(times) >= studies:
            break
    return {"cohort": root.name, "studies": len(times), "torch_threads": 2, "device": "cpu",
            "median_s": round(float(np.median(times)), 3) if times else None, "max_s": round(float(np.max(times)), 3) if times else None,
            "target_s": 5.0, "model": clf.description}


def _row(name: str, v: dict[str, Any]) -> str:
    s, n = v["station"], v["n_stage"]
    ece = f"{v['calibration']['ece']:.3f}" if "calibration" in v else "-"
    lo, hi = accuracy_interval(n["confusion"])
    return (f"| {name} | {s['accuracy']['value']:.3f} | {s['sensitivity']['value']:.3f} | {s['specificity']['value']:.3f} | "
            f"{s['auroc']['value']:.3f} [{s['auroc']['ci95'][0]:.3f}, {s['auroc']['ci95'][1]:.3f}] | {n['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {ece} |")


def targets(e: dict[str, Any]) -> list[str]:
    """The issue's targets on one cohort, measured."""
    m = e["methods"]
    base = {k: m[k] for k in ("suvmax", "blood_pool", "ct_size", "combined") if k in m}
    best_name = max(base, key=lambda k: base[k]["station"]["auroc"]["value"])
    best = base[best_name]["station"]["auroc"]["value"]
    weak, sup = m["weak"]["station"]["auroc"]["value"], m["supervised"]["station"]["auroc"]["value"]
    ns = m["weak"]["n_stage"]["accuracy"]
    ns_best = max(v["n_stage"]["accuracy"] for v in base.values())
    sens, spec = m["weak"]["station"]["sensitivity"]["value"], m["weak"]["station"]["specificity"]["value"]
    roc_sens = m["weak"]["station"]["sensitivity_at_specificity_0.90"]
    ok = lambda c: "met" if c else "**not met**"  # noqa: E731
    ge = lambda a, b: a >= b - TOLERANCE  # noqa: E731  (6/60 - ... must not fail by a rounding error)
    return [f"- AUROC >= best baseline ({best_name} {best:.3f}) + 0.05: {weak:.3f}, {ok(ge(weak, best + 0.05))}",
            f"- AUROC >= 95 % of the fully supervised model's ({sup:.3f}): {weak / sup:.1%}, {ok(ge(weak, 0.95 * sup))}",
            f"- sensitivity >= 0.80 at specificity >= 0.90: operating point {sens:.3f} at {spec:.3f}, {ok(ge(sens, 0.80) and ge(spec, 0.90))}; "
            f"best on this cohort's ROC {roc_sens:.3f}, {ok(ge(roc_sens, 0.80))}",
            f"- N-stage accuracy >= 0.70: {ns:.3f}{_interval(m['weak']['n_stage'])}, {ok(ge(ns, 0.70))}",
            f"- N-stage accuracy >= every baseline's + 0.10 (best baseline {ns_best:.3f}): {ns - ns_best:+.3f}, {ok(ge(ns, ns_best + 0.10))}"]


def _interval(n_stage: dict[str, Any]) -> str:
    """ " (95 % CI a-b, n patients)" of an N-stage accuracy with its confusion matrix; "" without one."""
    if "confusion" not in n_stage:
        return ""
    lo, hi = accuracy_interval(n_stage["confusion"])
    patients = staged_right(n_stage["confusion"])[1]
    return f" (95 % CI {lo:.3f}-{hi:.3f}, {patients} patients)"


def _best_on_validation(tr: dict[str, Any]) -> str:
    """The highest validation group AUROC among the variants validated as the shipped recipe is (out of fold on
    the whole cohort when it is an ensemble; on the one split otherwise)."""
    folds = int(tr["_split"].get("folds", 1))
    scores = {k: v["validation_group_auroc"] for k, v in tr.items() if not k.startswith("_") and v["members"] == folds}
    scores["weak (shipped)"] = tr["_shipped_validation_group_auroc"]
    best = max(scores, key=scores.get)
    return f"{best} ({scores[best]:.3f})"


def markdown(out: dict[str, Any]) -> str:
    mc = out["machine"]
    lines = ["# Station classifier benchmark (v2)", "",
             f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gb']} GB (load average at start {mc['load_average_1min_at_start']}). "
             + (f"GPU: {out['gpu']}." if out.get("gpu") else "No GPU on this machine: no GPU figures."), ""]
    t = out.get("timing")
    if t and t.get("studies"):
        lines += [f"Classifier time per study (inputs from the images + network; torch 2 threads, CPU; {t['cohort']}): median "
                  f"{t['median_s']} s, max {t['max_s']} s over {t['studies']} studies (target <= 5 s).", ""]
    tr = out["training"]
    sp = tr["_split"]
    lines += ["## Training (generator station maps; seeds in config/classifier.json)", "",
              f"{sp['cases']} training-cohort cases. Members 1: one network, {sp['train']} train + {sp['validation']} validation cases "
              f"(the recipe up to 2.3.1). Members {sp.get('folds', 1)}: a cross-fitted ensemble (config ensemble_note): each member trains on "
              f"three quarters and validates on the fourth; validation figures are out of fold, on all {sp['cases']}.", "",
              "| variant | overrides | members | best epoch | validation group AUROC | validation N-stage acc | threshold | calibration a | train s | studies / s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in tr.items():
        if k.startswith("_"):
            continue
        lines.append(f"| {k} | {json.dumps(v['overrides'])} | {v['members']} | {', '.join(str(e) for e in v['best_epoch'])} | "
                     f"{v['validation_group_auroc']:.3f} | {v['validation_n_stage_accuracy']:.3f} | {v['threshold']:.3f} | "
                     f"{', '.join(f'{c[0]:.2f}' for c in v['calibration'])} | {v['train_seconds']} | "
                     + (f"{v['studies_trained'] / v['train_seconds']:.1f} |" if v["train_seconds"] > 1 else "resumed |"))
    lines += ["", "Training throughput: training studies per second of wall time (CPU, 1 torch thread, other work on the "
              "machine; checkpoints resumed in a later run show as resumed)."]
    lines += ["", f"weak = the shipped model (config/classifier.json as is: patient context, {_config({})['training']['pooling']} pooling; "
              f"validation group AUROC {tr['_shipped_validation_group_auroc']:.3f}). Where its pooling was chosen: the config's pooling_note. "
              f"Highest validation group AUROC of the variants validated as it is: {_best_on_validation(tr)}."]
    if "_shipped_specificity_threshold" in tr:
        tc = _config({})["training"]
        lines += ["", f"Operating threshold rule: {tc['threshold']} (config/classifier.json threshold_note). {SPECIFICITY_ROW} = the "
                  f"shipped model's probabilities called at the earlier rule's threshold, specificity {tc['operating_specificity']} of the "
                  f"validation stations the N stage says are benign ({tr['_shipped_specificity_threshold']:.3f}"
                  + (", out of fold" if int(tr["_split"].get("folds", 1)) > 1 else " on this split") + ")."]
    lines += ["", *(f"Note: {n}" for n in out.get("notes", [])), "", "## Held-out cohorts", "",
              "Literature: Engelson et al. 2026 (patients): station accuracy 0.88, sensitivity 0.72, specificity 0.90, N-stage accuracy 0.63.", ""]
    for name, e in out["evaluations"].items():
        lines += [f"### {name}", "", f"{e['cases']} cases, {e['stations']} stations ({e['positive_stations']} malignant); station maps: {e['source']}.", "",
                  "| method | station acc | sens | spec | AUROC [95 % CI] | N-stage acc (TNM 8) [95 % CI] | ECE |", "|---|---|---|---|---|---|---|"]
        lines += [_row(m, v) for m, v in e["methods"].items()]
        lines.append("| Engelson 2026 (patients) | 0.88 | 0.72 | 0.90 | - | 0.63 | - |")
        lines += ["", "McNemar (exact), shipped model against each baseline:", ""]
        for k, v in e["mcnemar"].items():
            lines.append(f"- {k}: " + (v if isinstance(v, str) else
                         f"station p = {v['station']['p_value']:.3g} ({v['station']['a_right_b_wrong']} vs {v['station']['a_wrong_b_right']} discordant), "
                         f"N stage p = {v['n_stage']['p_value']:.3g}"))
        if "bounds" in e:
            b = e["bounds"]
            lines += ["", "What these data allow (not methods: the first two read the generator's truth; the third is a linear "
                      "reader trained on station labels of this cohort, 5-fold CV by case; the last picks its threshold on the cohort):", "",
                      f"- true uptake of the station's hottest node (no scanner blur): AUROC {b['true_hottest_node_uptake']:.3f}",
                      f"- true short axis of its largest node: AUROC {b['true_largest_node_short_axis']:.3f}",
                      f"- logistic regression on the measured features the network reads: AUROC {b['measured_features_logistic_supervised_cv']:.3f}"]
            if "shipped_n_stage_accuracy_best_threshold_on_cohort" in b:
                s = b["shipped_n_stage_accuracy_best_threshold_on_cohort"]
                lines.append(f"- the shipped model's probabilities at the threshold that stages most of these patients right, chosen on "
                             f"them ({s['threshold']:.3f}): N-stage accuracy {s['accuracy']:.3f}")
        lines += ["", "Targets:", "", *targets(e), "", f"![ROC]({name}/roc.png) ![reliability]({name}/reliability.png)", ""]
    for name, p in out.get("pooled", {}).items():
        best = p["shipped_best_threshold_on_pooled"]
        lines += [f"### Pooled: {name}", "", f"{p['patients']} patients of {', '.join(p['cohorts'])} as one cohort (confusion matrices summed; "
                  "Wilson 95 % intervals).", "", "| method | N-stage acc (TNM 8) [95 % CI] | patients staged right |", "|---|---|---|"]
        lines += [f"| {m} | {v['accuracy']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] | {v['right']} |" for m, v in p["n_stage"].items()]
        lines += ["", f"The shipped model's probabilities at the one threshold that stages most of these patients right, chosen on them "
                  f"({best['threshold']:.3f}; optimistic, not a method): N-stage accuracy {best['accuracy']:.3f}.",
                  f"- N-stage accuracy >= 0.70 over these patients: {p['n_stage']['weak']['accuracy']:.3f}, "
                  + ("met" if p["n_stage"]["weak"]["accuracy"] >= 0.70 - TOLERANCE else "**not met**"), ""]
    return "\n".join(lines) + "\n"


def write(out: dict[str, Any]) -> None:
    """bench/classifier/classifier.json and bench/classifier/classifier.md (`--markdown-only` rewrites the page from the JSON)."""
    (ROOT / "bench" / "classifier" / "classifier.json").write_text(json.dumps(out, indent=1, default=str))
    (ROOT / "bench" / "classifier" / "classifier.md").write_text(markdown(out))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=Path, action="append", required=True)
    p.add_argument("--held-out", action="append", required=True, help="NAME=DIR:SOURCE")
    p.add_argument("--model", type=Path, default=ROOT / "models")
    p.add_argument("--timing-studies", type=int, default=10)
    p.add_argument("--note", action="append", default=[], help="a line for the page's notes (what this run left out, and why)")
    p.add_argument("--pool", action="append", default=[], help="NAME=HELD_OUT_NAME,HELD_OUT_NAME,...: those cohorts' N stage as one")
    if "--markdown-only" in sys.argv:
        write(json.loads((ROOT / "bench" / "classifier" / "classifier.json").read_text()))
        return
    a = p.parse_args()
    import torch

    out: dict[str, Any] = {"machine": machine(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                           "notes": list(a.note)}
    models, out["training"] = train_variants(a.train)
    shipped_auroc, spec_thr = _shipped_validation(a.model, out["training"].pop("_validation"))
    out["training"]["_shipped_validation_group_auroc"] = shipped_auroc
    out["training"]["_shipped_specificity_threshold"] = spec_thr
    out["evaluations"], staging = {}, {}
    timing_root = None
    for spec in a.held_out:
        name, rest = spec.split("=", 1)
        root, source = rest.rsplit(":", 1)
        out["evaluations"][name], staging[name] = evaluate_held_out(name, Path(root), source, a.model, models, spec_thr)
        if source == "registration":
            timing_root = Path(root)
    out["pooled"] = {}
    for spec in a.pool:
        name, members = spec.split("=", 1)
        names = members.split(",")
        out["pooled"][name] = pooled(out["evaluations"], names, [staging[n] for n in names])
    if timing_root is not None:
        out["timing"] = throughput(a.model, timing_root, a.timing_studies)
    write(out)
    print((ROOT / "bench" / "classifier" / "classifier.md").read_text())


if __name__ == "__main__":
    main()
