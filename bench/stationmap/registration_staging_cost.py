"""What the atlas registration costs the N stage: the shipped model and the four reader baselines on the same
held-out patients, read once with the generator's station maps and once with the pipeline's registered maps.

  python -m bench.stationmap.registration_staging_cost --cohort data/v3/heldout_clinical_s17300 [--cohort ...] [--model models]

Both caches must be there (`nstage evaluate --model models --cohort DIR --stations truth|registration` builds
them). Writes bench/stationmap/registration_staging_cost.json: per cohort and method the station AUROC and the N-stage
accuracy with each map, and the patients whose stage the registered maps turn right or wrong (their true N
stage, both stages, the stations called with each map and the truly malignant ones; case keys are synthetic).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "stationmap" / "registration_staging_cost.json"
MAPS = ("truth", "registration")


def flips(truth: list[str], with_truth_maps: list[str], with_registered_maps: list[str]) -> dict[str, list[int]]:
    """Indices of the patients staged right with one station map and wrong with the other."""
    right_t = [a == t for a, t in zip(with_truth_maps, truth)]
    right_r = [a == t for a, t in zip(with_registered_maps, truth)]
    return {"lost_by_registration": [i for i, (a, b) in enumerate(zip(right_t, right_r)) if a and not b],
            "gained_by_registration": [i for i, (a, b) in enumerate(zip(right_t, right_r)) if b and not a]}


def _called(stations: list[str], calls: np.ndarray) -> list[str]:
    return [s for s, v in zip(stations, calls) if v]


def cohort_cost(root: Path, model_dir: Path) -> dict[str, Any]:
    """Both readings of one cohort (cached inputs only), side by side."""
    from nstage.analysis.classifier.layout import find_model
    from nstage.analysis.classifier.settings import classifier_config, patch_settings
    from nstage.training.cache import load_cached
    from nstage.training.cohort import read_cohort
    from nstage.training.evaluate import MethodOutput, baselines, n_stages
    from nstage.training.metrics import auroc, nstage_metrics, staged_right
    from nstage.training.workflow import predict_exported

    cfg = classifier_config()
    rules = str(cfg["training"].get("rules", "tnm"))
    rows = read_cohort(root)
    readings: dict[str, dict[str, Any]] = {}
    for source in MAPS:
        cases = load_cached(rows, source, patch_settings(cfg))
        if len(cases) != len(rows):
            raise SystemExit(f"error: {root} has {len(cases)} of {len(rows)} cases cached with {source} station maps; "
                             f"run nstage evaluate --model {model_dir} --cohort {root} --stations {source} first")
        probs, thr, _ = predict_exported(find_model(model_dir), cases)
        methods = [MethodOutput("model", probs, [p >= thr for p in probs]), *baselines(cases, rules)]
        readings[source] = {"cases": cases, "methods": {m.name: m for m in methods}}
    truth_cases = readings["truth"]["cases"]
    truth_n = [c.case.n_tnm8 for c in truth_cases]
    out: dict[str, Any] = {"cohort": root.name, "cases": len(rows), "methods": {}}
    for name in readings["truth"]["methods"]:
        per_map: dict[str, Any] = {}
        stages: dict[str, list[str]] = {}
        for source in MAPS:
            cases, m = readings[source]["cases"], readings[source]["methods"][name]
            stages[source] = n_stages(cases, m.calls, rules)
            y = np.concatenate([c.truth() for c in cases])
            n_stage = nstage_metrics(stages[source], truth_n)
            per_map[source] = {"station_auroc": round(float(auroc(np.concatenate(m.scores), y)), 4),
                               "n_stage_right": staged_right(n_stage["confusion"])[0],
                               "n_stage_accuracy": round(float(n_stage["accuracy"]), 4)}
        changed = flips(truth_n, stages["truth"], stages["registration"])
        detail = {kind: [{"case": truth_cases[i].case.key, "true_n": truth_n[i],
                          "n_with_truth_maps": stages["truth"][i], "n_with_registered_maps": stages["registration"][i],
                          "called_with_truth_maps": _called(truth_cases[i].stations, readings["truth"]["methods"][name].calls[i]),
                          "called_with_registered_maps": _called(readings["registration"]["cases"][i].stations,
                                                                 readings["registration"]["methods"][name].calls[i]),
                          "malignant": [s for s, v in (truth_cases[i].case.station_truth or {}).items() if v]}
                         for i in idx] for kind, idx in changed.items()}
        out["methods"][name] = {**per_map, **detail}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, action="append", required=True)
    ap.add_argument("--model", type=Path, default=ROOT / "models")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    model = a.model.resolve()
    shown = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model
    result = {"machine": machine(), "model": str(shown), "cohorts": [cohort_cost(r, a.model) for r in a.cohort]}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    for c in result["cohorts"]:
        for name, m in c["methods"].items():
            print(f"{c['cohort']} {name}: AUROC {m['truth']['station_auroc']:.3f} -> {m['registration']['station_auroc']:.3f}, "
                  f"staged right {m['truth']['n_stage_right']} -> {m['registration']['n_stage_right']} of {c['cases']} "
                  f"(lost {len(m['lost_by_registration'])}, gained {len(m['gained_by_registration'])})")


if __name__ == "__main__":
    main()
