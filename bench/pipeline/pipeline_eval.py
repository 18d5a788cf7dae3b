"""The whole `nstage run` pipeline on a synthetic cohort: station calls and N stages against the truth.

`python -m bench.pipeline.pipeline_eval [--cases 50] [--seed 20261126] [--work DIR]` generates the cohort
(small preset; the seed of the calibration tests), runs the pipeline's stages on every case
(registration included; per-case results cached in WORK so a rerun only scores) and writes
bench/pipeline/pipeline_eval.json: station sensitivity / specificity / accuracy and N-stage accuracy of the
classifier slot and of both SUV baselines, beside the literature figures of clinical-rules.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "pipeline" / "pipeline_eval.json"
LITERATURE = {
    "seed_paper_real_patients": {"station_accuracy": 0.88, "sensitivity": 0.72, "specificity": 0.90, "n_stage_accuracy": 0.63},
    "cochrane_CD009519_pet_ct": {"sensitivity": 0.77, "specificity": 0.90},
    "zhao_2012_per_station": {"sensitivity": 0.61, "specificity": 0.92},
}


def ensure_cohort(work: Path, cases: int, seed: int) -> Path:
    """The synthetic cohort in WORK/cohort (generated once)."""
    cohort = work / "cohort"
    if (cohort / "cohort.csv").exists() and len((cohort / "cohort.csv").read_text().splitlines()) == cases + 1:
        return cohort
    subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(cohort), "--cases", str(cases), "--seed", str(seed), "--preset", "small"],
                   check=True, cwd=ROOT)
    return cohort


def analyse_cohort(cohort: Path, results: Path) -> dict[str, dict[str, Any]]:
    """result.json content per case (cached in RESULTS)."""
    from nstage.pipeline import RunOptions, analyse_study
    from nstage.progress import StageTimer

    results.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Any]] = {}
    empty_models = results / "no-models"
    empty_models.mkdir(exist_ok=True)
    for case in sorted(p for p in cohort.iterdir() if (p / "truth.json").exists()):
        cached = results / f"{case.name}.json"
        if not cached.exists():
            timer = StageTimer()
            try:
                analysis = analyse_study(case / "dicom", empty_models, RunOptions(), timer)
                doc = dict(analysis.result, timings_s=dict(timer.timings))
            except Exception as exc:  # a failed case is a result too: it counts as all stations benign, N stage wrong
                doc = {"error": f"{type(exc).__name__}: {exc}"}
            cached.write_text(json.dumps(doc))
        out[case.name] = json.loads(cached.read_text())
    return out


def rescore_baselines(result: dict[str, Any]) -> dict[str, Any]:
    """Re-apply the current baseline rules (config/analysis.json) to a cached result's measurements."""
    from nstage.analysis.baselines import blood_pool_baseline, suvmax_baseline
    from nstage.analysis.measure import StationUptake
    from nstage.stations import by_name

    if "error" in result:
        return result
    names = by_name()
    uptake = {s: StationUptake(names[s].label, v["volume_ml"], v["suv_max"], v["suv_mean"], v["suv_peak"], tuple(v["hottest_point_lps"]))
              for s, v in result["stations"].items()}
    side, rules = result["tumour_side"], result["rule_set"]
    baseline = {"suvmax": suvmax_baseline(uptake, side, rules).as_dict()}
    pool = result["blood_pool"]
    baseline["blood_pool"] = (blood_pool_baseline(uptake, pool["suv_mean"], side, rules).as_dict() if pool["available"]
                              else {"available": False})
    return dict(result, baseline=baseline)


def _rates(pairs: list[tuple[bool, bool]]) -> dict[str, float | int]:
    tp = sum(1 for t, c in pairs if t and c)
    fn = sum(1 for t, c in pairs if t and not c)
    tn = sum(1 for t, c in pairs if not t and not c)
    fp = sum(1 for t, c in pairs if not t and c)
    return {"sensitivity": round(tp / max(tp + fn, 1), 3), "specificity": round(tn / max(tn + fp, 1), 3),
            "accuracy": round((tp + tn) / max(len(pairs), 1), 3), "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def score(truths: Mapping[str, dict[str, Any]], results: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Station and N-stage figures of the classifier slot and each baseline."""
    methods: dict[str, dict[str, Any]] = {}
    for method in ("model", "suvmax", "blood_pool"):
        station_pairs: list[tuple[bool, bool]] = []
        n8 = n9 = counted = 0
        for case, truth in truths.items():
            res = results.get(case, {})
            if method == "model":
                calls = {s: v["malignant"] for s, v in res.get("stations", {}).items()}
                stage = res.get("n_stage", {})
            else:
                block = res.get("baseline", {}).get(method, {})
                if block.get("available") is False:
                    continue
                calls = {s: v["malignant"] for s, v in block.get("stations", {}).items()}
                stage = block.get("n_stage", {})
            counted += 1
            station_pairs += [(bool(t["malignant"]), bool(calls.get(s, False))) for s, t in truth["stations"].items()]
            n8 += stage.get("tnm8") == truth["n_stage"]["tnm8"]
            n9 += stage.get("tnm9") == truth["n_stage"]["tnm9"]
        methods[method] = {"cases": counted, "stations": _rates(station_pairs),
                           "n_stage_accuracy_tnm8": round(n8 / max(counted, 1), 3), "n_stage_accuracy_tnm9": round(n9 / max(counted, 1), 3)}
    sides = [(t["tumour_side"], results.get(c, {}).get("tumour_side")) for c, t in truths.items()]
    pools = [(results[c]["blood_pool"]["suv_mean"], t["pet"]["tissue_suv"]["arterial_blood"]) for c, t in truths.items()
             if results.get(c, {}).get("blood_pool", {}).get("available")]
    return {
        "methods": methods,
        "tumour_side_correct": round(sum(a == b for a, b in sides) / max(len(sides), 1), 3),
        "blood_pool_relative_error": {"median": round(sorted(abs(m / t - 1) for m, t in pools)[len(pools) // 2], 3) if pools else None,
                                      "max": round(max(abs(m / t - 1) for m, t in pools), 3) if pools else None, "cases": len(pools)},
        "failed_cases": sorted(c for c in truths if "error" in results.get(c, {"error": "missing"})),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nstage-pipeline-eval"))
    args = ap.parse_args(argv)
    cohort = ensure_cohort(args.work, args.cases, args.seed)
    results = {c: rescore_baselines(r) for c, r in analyse_cohort(cohort, args.work / f"results-seed{args.seed}").items()}
    truths = {c: json.loads((cohort / c / "truth.json").read_text()) for c in results}
    report = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "cohort": {"cases": len(truths), "seed": args.seed, "preset": "small"}, **score(truths, results), "literature": LITERATURE}
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'method':<12} {'sens':>6} {'spec':>6} {'acc':>6} {'N8 acc':>7} {'N9 acc':>7}")
    for name, m in report["methods"].items():
        s = m["stations"]
        print(f"{name:<12} {s['sensitivity']:>6} {s['specificity']:>6} {s['accuracy']:>6} {m['n_stage_accuracy_tnm8']:>7} {m['n_stage_accuracy_tnm9']:>7}")
    print(f"tumour side correct: {report['tumour_side_correct']}; blood pool error {report['blood_pool_relative_error']}")
    print(f"written: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
