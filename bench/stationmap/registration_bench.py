"""Atlas registration on synthetic `clinical` cases: per-station Dice, centroid error and time.

Usage: python -m bench.stationmap.registration_bench [--cases N] [--first-seed S] [--out bench/stationmap/registration.json]

Cases are rendered in memory from seeds not used in development (900001 and up), one case per
seed; the default atlas is registered to each CT with `nstage.stationmap.registration.map_stations`, and the
station map is compared with the generator's truth on the CT grid. The time is that of
`map_stations` (landmarks, pre-alignment, Elastix, label transfer, quality), on this machine, with
the thread count of config/registration.json. Targets (issue 4): mean per-station Dice >= 0.70,
median centroid error <= 5 mm, no station missing, <= 60 s per registration on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"mean_station_dice_min": 0.70, "median_centroid_error_mm_max": 5.0, "stations_missing_max": 0, "seconds_per_registration_max": 60.0}


def station_scores(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float], affine: np.ndarray,
                   labels: dict[int, str]) -> dict[str, dict[str, float | None]]:
    """Dice and centroid distance (mm) per station present in the truth."""
    out: dict[str, dict[str, float | None]] = {}
    for value, name in labels.items():
        t = truth == value
        if not t.any():
            continue
        p = pred == value
        dice = 2.0 * float((p & t).sum()) / float(p.sum() + t.sum())
        err = None
        if p.any():
            ct = affine[:3, :3] @ np.array(np.nonzero(t))[::-1].mean(axis=1) + affine[:3, 3]
            cp = affine[:3, :3] @ np.array(np.nonzero(p))[::-1].mean(axis=1) + affine[:3, 3]
            err = float(np.linalg.norm(ct - cp))
        out[name] = {"dice": round(dice, 4), "centroid_error_mm": None if err is None else round(err, 2)}
    return out


def dice_per_station(a: np.ndarray, b: np.ndarray, labels: dict[int, str]) -> dict[str, float]:
    """Dice of two station maps, per station present in either."""
    out = {}
    for value, name in labels.items():
        pa, pb = a == value, b == value
        if pa.any() or pb.any():
            out[name] = round(2.0 * float((pa & pb).sum()) / float(pa.sum() + pb.sum()), 4)
    return out


def run_case(seed: int, atlases: list[Any]) -> dict[str, Any]:
    """Render one clinical case, register the atlas, score the stations."""
    from nstage.progress import StageTimer
    from nstage.stationmap.registration import map_stations
    from nstage.stations import load_stations
    from nstage.synth.case import render_case

    t0 = time.perf_counter()
    case = render_case(f"bench{seed}", seed, 0, "clinical", "default", None, StageTimer())
    render_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = map_stations(case.hu, case.ct_grid, atlases)
    seconds = time.perf_counter() - t1
    labels = {s.label: s.station for s in load_stations()}
    scores = station_scores(result.labels, case.stations, case.ct_grid.spacing, case.ct_grid.affine, labels) if result.labels is not None else {}
    missing = [labels[v] for v in labels if (case.stations == v).any() and (result.labels is None or not (result.labels == v).any())]
    return {
        "seed": seed, "status": result.status, "reasons": result.grade.reasons, "seconds": round(seconds, 2),
        "render_seconds": round(render_s, 1), "ct_shape": list(case.ct_grid.shape), "ct_spacing_mm": list(case.ct_grid.spacing),
        "contrast": case.truth["ct"]["contrast"], "arms_down": case.truth["anatomy"]["arms_down"],
        "stations": scores, "stations_missing": missing, "figures": result.figures(), "timings_s": result.timings_s,
    }


def summarise(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-station means over cases and the figures the targets are about."""
    names: list[str] = []
    for c in cases:
        names += [n for n in c["stations"] if n not in names]
    per_station = {}
    for n in names:
        d = [c["stations"][n]["dice"] for c in cases if n in c["stations"]]
        e = [c["stations"][n]["centroid_error_mm"] for c in cases if n in c["stations"] and c["stations"][n]["centroid_error_mm"] is not None]
        per_station[n] = {"dice_mean": round(float(np.mean(d)), 3), "dice_min": round(float(np.min(d)), 3),
                          "centroid_error_mm_median": round(float(np.median(e)), 2) if e else None, "n": len(d)}
    errors = [s["centroid_error_mm"] for c in cases for s in c["stations"].values() if s["centroid_error_mm"] is not None]
    seconds = [c["seconds"] for c in cases]
    summary = {
        "cases": len(cases),
        "mean_station_dice": round(float(np.mean([v["dice_mean"] for v in per_station.values()])), 3) if per_station else None,
        "median_centroid_error_mm": round(float(np.median(errors)), 2) if errors else None,
        "stations_missing": sum(len(c["stations_missing"]) for c in cases),
        "statuses": {s: sum(c["status"] == s for c in cases) for s in ("ok", "suspect", "failed")},
        "seconds_per_registration_mean": round(float(np.mean(seconds)), 1),
        "seconds_per_registration_max": round(float(np.max(seconds)), 1),
    }
    summary["meets_targets"] = bool(
        summary["mean_station_dice"] is not None and summary["mean_station_dice"] >= TARGETS["mean_station_dice_min"]
        and summary["median_centroid_error_mm"] is not None and summary["median_centroid_error_mm"] <= TARGETS["median_centroid_error_mm_max"]
        and summary["stations_missing"] <= TARGETS["stations_missing_max"]
        and summary["seconds_per_registration_max"] <= TARGETS["seconds_per_registration_max"])
    return {"summary": summary, "per_station": per_station}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=900001)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "stationmap" / "registration.json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.machine import machine
    from nstage import paths
    from nstage.stationmap.atlas import load_atlases

    atlases = load_atlases([paths.atlas_dir()])
    cases = []
    for seed in range(args.first_seed, args.first_seed + args.cases):
        c = run_case(seed, atlases)
        cases.append(c)
        dice = np.mean([s["dice"] for s in c["stations"].values()]) if c["stations"] else float("nan")
        print(f"seed {seed}: {c['status']}, mean station Dice {dice:.3f}, {c['seconds']:.1f} s", flush=True)
    result = {"benchmark": "atlas registration on synthetic clinical cases", "machine": machine(), "targets": TARGETS,
              **summarise(cases), "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    s = result["summary"]
    print(f"{'station':<8} {'Dice':>6} {'min':>6} {'centroid mm':>12}")
    for n, v in result["per_station"].items():
        print(f"{n:<8} {v['dice_mean']:>6.3f} {v['dice_min']:>6.3f} {v['centroid_error_mm_median'] if v['centroid_error_mm_median'] is not None else '-':>12}")
    print(f"mean station Dice {s['mean_station_dice']}, median centroid error {s['median_centroid_error_mm']} mm, "
          f"missing {s['stations_missing']}, {s['seconds_per_registration_mean']} s mean / {s['seconds_per_registration_max']} s max "
          f"per registration, statuses {s['statuses']}; targets met: {s['meets_targets']}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
