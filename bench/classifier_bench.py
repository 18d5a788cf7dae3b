"""Station classifier benchmark: figures of the held-out evaluation and classifier time per study.

  python -m bench.classifier_bench --model models --held-out DIR [--report DIR] [--cases N]

Times `classifier.classify(StationCase)` (patch extraction + network, as the pipeline calls it) on
studies of the held-out cohort with torch limited to 2 threads (the "2 CPU cores" of the target),
reusing their cached registered station maps. Writes bench/classifier.json and bench/classifier.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[1]


def time_classifier(models: Path, held_out: Path, cases: int) -> dict[str, object]:
    import torch

    from nstage.analysis.classifier.slot import load_classifier
    from nstage.analysis.classifier.station_case import StationCase
    from nstage.analysis.measure import station_uptake
    from nstage.ingest.study import load_study
    from nstage.stations import load_stations
    from nstage.training.cohort import read_cohort

    torch.set_num_threads(2)
    clf = load_classifier(models)
    names = {s.label: s.station for s in load_stations()}
    times = []
    for c in read_cohort(held_out):
        reg = held_out / ".nstage_cache" / "stations-registration" / f"{c.case}.npz"
        if not reg.is_file():
            continue
        study = load_study(c.study_dir)
        labels = np.load(reg)["labels"]
        uptake = {names[k]: v for k, v in station_uptake(study.pet.array, study.pet.grid, labels, study.ct.grid).items()}
        case = StationCase(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, labels, uptake)
        t0 = time.perf_counter()
        clf.classify(case)
        times.append(time.perf_counter() - t0)
        if len(times) >= cases:
            break
    return {"studies": len(times), "torch_threads": 2, "device": "cpu", "median_s": round(float(np.median(times)), 3),
            "max_s": round(float(np.max(times)), 3), "target_s": 5.0, "model": clf.description}


def markdown(out: dict[str, object]) -> str:
    """bench/classifier.md: every evaluation's station / N-stage table, McNemar tests and the timing."""
    t = out["timing"]
    lines = ["# Station classifier benchmark", "", f"Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores "
             f"(load average at start {out['machine']['load_average_1min_at_start']}).", "",
             f"Classifier time per study (patch extraction + network, torch 2 threads, CPU): median {t['median_s']} s, "
             f"max {t['max_s']} s over {t['studies']} studies (target <= 5 s).", ""]
    for name, e in out["evaluations"].items():
        lines += [f"## {name}", "", f"{e['cases']} cases, {e['stations']} stations ({e['positive_stations']} malignant).", "",
                  "| method | station acc | sens | spec | AUROC [95 % CI] | N-stage acc | macro sens | macro spec |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, v in e["methods"].items():
            s, n = v["station"], v["n_stage"]
            lines.append(f"| {m} | {s['accuracy']['value']:.3f} | {s['sensitivity']['value']:.3f} | {s['specificity']['value']:.3f} | "
                         f"{s['auroc']['value']:.3f} [{s['auroc']['ci95'][0]:.3f}, {s['auroc']['ci95'][1]:.3f}] | "
                         f"{n['accuracy']:.3f} | {n['macro_sensitivity']:.3f} | {n['macro_specificity']:.3f} |")
        for k, v in e["mcnemar"].items():
            lines.append(f"\nMcNemar {k}: " + (v if isinstance(v, str) else
                         f"station p = {v['station']['p_value']:.3g}, N stage p = {v['n_stage']['p_value']:.3g}"))
        lines.append("")
    ceiling = ROOT / "bench" / "classifier_ceiling.json"
    if ceiling.is_file():
        lines += ceiling_section(json.loads(ceiling.read_text()))
    return "\n".join(lines) + "\n"


CEILING_ROWS = {
    "oracle_suv": "true uptake of the hottest node (no scanner blur)",
    "oracle_local": "network on the station's true nodes (uptake, size, calcification) + station identity",
    "oracle_local_side": "... + the station's N category for the tumour side",
    "oracle_patient": "... + every station's hottest true uptake and size (patient context)",
    "measured_suvmax": "measured station SUVmax (the baseline)",
    "measured_uptake_and_perfect_ct": "network on measured SUVmax/SUVpeak/SUVmean + true node size and calcification (5-fold CV by case)",
    "measured_node_uptake_and_perfect_ct": "... + rendered SUV at the true centre of the station's hottest-reading node and its size (a perfect node detector)",
}


def ceiling_section(c: dict[str, object]) -> list[str]:
    """What the synthetic data allow at all (bench/classifier_ceiling.py): oracle AUROC and N-stage accuracy."""
    lines = ["## What the synthetic data allow (bench/classifier_ceiling.json)", "",
             "Oracle classifiers, not methods: they read the generator's truth. The N-stage accuracy is the best any "
             "threshold reaches on the same patients (tuned on the test patients: a bound).", "",
             "| data | method | AUROC | best N-stage acc |", "|---|---|---|---|"]
    parts = [("disease_model", f"disease model, {c['disease_model']['test_patients']} sampled patients")]  # type: ignore[index]
    if "rendered" in c:
        r = c["rendered"]
        parts.append(("rendered", f"rendered cohort, {r['cases']} cases"))  # type: ignore[index]
    for key, label in parts:
        for m, v in c[key]["methods"].items():  # type: ignore[index]
            lines.append(f"| {label} | {CEILING_ROWS.get(m, m)} | {v['auroc']:.3f} | {v['n_stage_accuracy_best_threshold']:.3f} |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, default=ROOT / "models")
    p.add_argument("--held-out", type=Path, required=True)
    p.add_argument("--report", type=Path, action="append", default=[], help="evaluation folder(s) (evaluation.json) to include")
    p.add_argument("--cases", type=int, default=10)
    a = p.parse_args()
    out: dict[str, object] = {"machine": machine(), "timing": time_classifier(a.model, a.held_out, a.cases), "evaluations": {}}
    for r in a.report:
        out["evaluations"][r.name] = json.loads((r / "evaluation.json").read_text())
    (ROOT / "bench" / "classifier.json").write_text(json.dumps(out, indent=1))
    (ROOT / "bench" / "classifier.md").write_text(markdown(out))
    t = out["timing"]
    print(f"classifier: median {t['median_s']} s per study (max {t['max_s']} s, {t['studies']} studies, 2 threads); target <= 5 s")


if __name__ == "__main__":
    main()
