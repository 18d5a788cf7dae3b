"""The registration backends side by side on synthetic cases: station Dice and centroid error against
the generator's truth, Dice of each variant's stations against the reference's, and time, on this machine's CPU.

Usage: python -m bench.stationmap.registration_backends [--preset small|clinical] [--cases N] [--first-seed S]
       [--threads T] [--variants elastix,elastix-program,torch] [--out bench/stationmap/registration_backends.json]

Variants: `elastix` (Elastix through ITK's Python module, itk-elastix: the reference), `elastix-program`
(Elastix's own programs, Debian's elastix, config/registration.json `elastix_runner` program) and `torch`.

Cases are rendered in memory from seeds not used in development (900001 and up, as bench/stationmap/registration_bench.py),
one per seed; the default atlas is registered to each CT with `map_stations(..., backend=...)` once with
Elastix and once with the PyTorch backend (config/registration.json's settings; device: the CPU unless
torch sees a GPU), and both station maps are scored as in bench/stationmap/registration_bench.py. Times: the
backend's own stage ("atlas reference: elastix" / "... torch") and the whole `map_stations` call.
Targets (issue 19): torch's mean station Dice within 0.02 of Elastix's, median centroid error <= 3 mm,
no station missing. GPU figures are not measured here: this bench runs where it is started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# variant -> (backend, Elastix runner); the first is the reference the others are compared with
VARIANTS = {"elastix": ("elastix", "module"), "elastix-program": ("elastix", "program"), "torch": ("torch", "module")}
TARGETS = {"mean_station_dice_gap_max": 0.02, "median_centroid_error_mm_max": 3.0, "stations_missing_max": 0}
# issue 41's quality gate for a faster default: it may lose at most this much mean station Dice against the reference
GATE_DICE_LOSS_MAX = 0.01


def run_case(seed: int, preset: str, atlases: list[Any], settings: Any, variants: list[str]) -> dict[str, Any]:
    """Render one case, register it with each variant, score each station map."""
    from bench.stationmap.registration_bench import dice_per_station, station_scores
    from nstage.progress import StageTimer
    from nstage.stationmap.registration import map_stations
    from nstage.stations import load_stations
    from nstage.synth.case import render_case

    case = render_case(f"bench{seed}", seed, 0, preset, "default", None, StageTimer())
    labels = {s.label: s.station for s in load_stations()}
    out: dict[str, Any] = {"seed": seed, "ct_shape": list(case.ct_grid.shape), "ct_spacing_mm": list(case.ct_grid.spacing)}
    maps: dict[str, np.ndarray | None] = {}
    for variant in variants:
        backend, runner = VARIANTS[variant]
        timer = StageTimer()
        t0 = time.perf_counter()
        result = map_stations(case.hu, case.ct_grid, atlases, replace(settings, elastix_runner=runner), timer=timer, backend=backend)
        seconds = time.perf_counter() - t0
        maps[variant] = result.labels
        scores = station_scores(result.labels, case.stations, case.ct_grid.spacing, case.ct_grid.affine, labels) if result.labels is not None else {}
        missing = [labels[v] for v in labels if (case.stations == v).any() and (result.labels is None or not (result.labels == v).any())]
        stage = next((v for k, v in timer.timings.items() if k.endswith(f": {backend}")), None)
        out[variant] = {"status": result.status, "reasons": result.grade.reasons, "seconds": round(seconds, 2),
                        "backend_seconds": None if stage is None else round(stage, 2), "stations": scores, "stations_missing": missing,
                        "figures": result.figures(), "backend": result.report()["backend"]}
    reference = maps[variants[0]]
    for variant in variants[1:]:
        if maps[variant] is not None and reference is not None:
            out[f"dice_{variant}_vs_{variants[0]}"] = dice_per_station(maps[variant], reference, labels)
    return out


def summarise(cases: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per variant: bench/stationmap/registration_bench.py's summary; and each variant against the first."""
    from bench.stationmap.registration_bench import summarise as one

    out: dict[str, Any] = {}
    for variant in variants:
        rows = [{**c[variant], "seed": c["seed"]} for c in cases]
        s = one(rows)
        s["summary"].pop("meets_targets", None)
        stages = [r["backend_seconds"] for r in rows if r["backend_seconds"] is not None]
        s["summary"]["backend_seconds_mean"] = round(float(np.mean(stages)), 1) if stages else None
        s["summary"]["backend_seconds_max"] = round(float(np.max(stages)), 1) if stages else None
        out[variant] = s
    reference = variants[0]
    out["comparison"] = {}
    for variant in variants[1:]:
        key = f"dice_{variant}_vs_{reference}"
        agree = [v for c in cases for v in c.get(key, {}).values()]
        per_case = [float(np.mean(list(c[key].values()))) for c in cases if c.get(key)]
        mine, ref = out[variant]["summary"], out[reference]["summary"]
        gap = None
        if mine["mean_station_dice"] is not None and ref["mean_station_dice"] is not None:
            gap = round(ref["mean_station_dice"] - mine["mean_station_dice"], 3)
        out["comparison"][variant] = {
            f"{key}_mean": round(float(np.mean(agree)), 3) if agree else None,
            f"{key}_min_station": round(float(np.min(agree)), 3) if agree else None,
            f"{key}_min_case_mean": round(float(np.min(per_case)), 3) if per_case else None,
            f"mean_station_dice_gap_{reference}_minus_{variant}": gap,
            "meets_targets": bool(gap is not None and gap <= TARGETS["mean_station_dice_gap_max"]
                                  and mine["median_centroid_error_mm"] is not None and mine["median_centroid_error_mm"] <= TARGETS["median_centroid_error_mm_max"]
                                  and mine["stations_missing"] <= TARGETS["stations_missing_max"]),
            "passes_issue_41_gate": bool(gap is not None and gap <= GATE_DICE_LOSS_MAX and mine["stations_missing"] == 0),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small", choices=["small", "clinical"])
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=900001)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of both backends (default: config/registration.json's, 0 = every core); 1 keeps times "
                   "comparable on a machine shared with other work (torch's OpenMP threads slow down badly when the cores are oversubscribed)")
    p.add_argument("--variants", default="elastix,elastix-program,torch", help=f"comma-separated, the first the reference: {', '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "stationmap" / "registration_backends.json")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        p.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    sys.path.insert(0, str(ROOT))
    import torch

    from bench.machine import machine
    from nstage import paths
    from nstage.stationmap.atlas import load_atlases
    from nstage.stationmap.registration_settings import load_settings
    from nstage.stationmap.registration_torch import library_versions, torch_device

    settings = load_settings()
    if args.threads is not None:
        settings = replace(settings, threads=args.threads, torch=replace(settings.torch, threads=args.threads))
    atlases = load_atlases([paths.atlas_dir()])
    started = machine()
    cases = []
    for seed in range(args.first_seed, args.first_seed + args.cases):
        c = run_case(seed, args.preset, atlases, settings, variants)
        cases.append(c)
        line = ", ".join(f"{b} {c[b]['status']} Dice {np.mean([s['dice'] for s in c[b]['stations'].values()]) if c[b]['stations'] else float('nan'):.3f} "
                         f"{c[b]['backend_seconds']} s" for b in variants)
        print(f"seed {seed}: {line}", flush=True)
    device = torch_device(settings.torch.device)
    result = {
        "benchmark": f"registration backends side by side on synthetic {args.preset} cases",
        "machine": started, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "threads": {"elastix": settings.threads or os.cpu_count(), "torch": settings.torch.threads or settings.threads or os.cpu_count()},
        "torch": {"device": device, **library_versions(),
                  "cuda_available": torch.cuda.is_available(), "settings": {k: v for k, v in vars(settings.torch).items()}},
        "gpu": "measured" if device != "cpu" else "not measured: no GPU on this machine (the torch backend ran on the CPU)",
        "preset": args.preset, "variants": {v: dict(zip(("backend", "elastix_runner"), VARIANTS[v])) for v in variants},
        "targets": {**TARGETS, "issue_41_gate_dice_loss_max": GATE_DICE_LOSS_MAX}, **summarise(cases, variants), "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"{'':<16} {'Dice':>6} {'centroid mm':>12} {'missing':>8} {'backend s':>10} {'map_stations s':>15}")
    for b in variants:
        s = result[b]["summary"]
        print(f"{b:<16} {s['mean_station_dice']:>6} {s['median_centroid_error_mm']:>12} {s['stations_missing']:>8} "
              f"{s['backend_seconds_mean']:>10} {s['seconds_per_registration_mean']:>15}")
    print(f"comparison: {result['comparison']}; torch on {device}; written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
