"""Node reading against the generator's truth: detection, short-axis error, false candidates, index-node uptake, the four baselines.

`python -m bench.nodes.node_reading --preset clinical --cases 20 --seed 7100 [--stations truth|registration] [--jobs 2]`
renders each case in memory (no DICOM), maps the stations (the generator's station map, or the
pipeline's atlas registration), reads the nodes with nstage.analysis.nodes and compares them with
truth.json `nodes` (found, short axis, CT signs: calcified, fat-containing against the true fatty
hilum, low-density centre against true necrosis). Writes bench/nodes/node_reading_<preset>_<stations>.json. The blood pool is the
measured one with registration, the generator's blood uptake with truth stations (no atlas region
there). Seeds 7100+ were not used in developing the node reader (development: seed 7000).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine
from nstage.progress import configure_logging
from nstage.cohort_executor import map_all

ROOT = Path(__file__).resolve().parents[2]
MATCH_MM = 5.0
SIGNS = {"calcified": "calcified", "fat_containing": "fatty_hilum", "low_density_centre": "necrotic"}  # reader's flag: truth.json's
LITERATURE = {
    "ct_size_rule": {"sensitivity": 0.55, "specificity": 0.81, "source": "CT short axis >= 10 mm (clinical-rules / Lv 2011 comparison)"},
    "pet_ct_per_node_lv_2011": {"sensitivity": 0.68, "specificity": 0.95},
    "pet_per_station_zhao_2012": {"sensitivity": 0.61, "specificity": 0.92},
}


def _case(args: tuple[int, int, str, str]) -> dict[str, Any]:
    """Read one case's nodes; return its node, station and patient rows."""
    from nstage.analysis.baselines import blood_pool_baseline, combined_baseline, ct_size_baseline, suvmax_baseline
    from nstage.analysis.measure import station_uptake
    from nstage.analysis.nodes import node_settings, read_nodes
    from nstage.analysis.tumour_side import find_tumour_side
    from nstage.progress import StageTimer
    from nstage.stations import load_stations
    from nstage.synth.case import render_case

    seed, index, preset, source = args
    rc = render_case(f"case_{index:04d}", seed, index, preset, "default", None, StageTimer())
    names = {s.label: s.station for s in load_stations()}
    stations = rc.stations
    pool = float(rc.truth["pet"]["tissue_suv"]["arterial_blood"])
    if source == "registration":
        from nstage.analysis.blood_pool import measure_blood_pool
        from nstage.paths import atlas_dir
        from nstage.stationmap.atlas import load_atlases
        from nstage.stationmap.registration import map_stations

        reg = map_stations(rc.hu, rc.ct_grid, load_atlases([atlas_dir()]))
        if reg.labels is None:
            return {"case": index, "failed": True}
        stations = reg.labels
        bp = measure_blood_pool(reg.regions.get("blood_pool"), rc.hu, rc.ct_grid, rc.suv, rc.pet_grid)
        pool = bp.suv_mean if bp.suv_mean is not None else pool
    side = find_tumour_side(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, stations, pool)
    tumour_suv = side.primary.suv_max if side.primary else None
    t0 = time.perf_counter()
    every = dataclasses.replace(node_settings(), max_nodes_per_station=1000)
    found = read_nodes(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, stations, names, pool, tumour_suv, every)
    seconds = time.perf_counter() - t0
    uptake = {names[k]: v for k, v in station_uptake(rc.suv, rc.pet_grid, stations, rc.ct_grid).items()}
    truth_side = rc.truth["tumour_side"]
    baselines = [suvmax_baseline(uptake, truth_side), blood_pool_baseline(uptake, pool, truth_side),
                 ct_size_baseline(uptake, found, truth_side), combined_baseline(uptake, found, truth_side)]
    truth_nodes = rc.truth["nodes"]
    node_rows = []
    matched: set[tuple[str, int]] = set()
    for tn in truth_nodes:
        cands = [(st, k, n) for st, sn in found.items() for k, n in enumerate(sn.nodes)]
        best = min(cands, key=lambda c: np.linalg.norm(np.subtract(c[2].centre_lps, tn["centre_lps"])), default=None)
        dist = float(np.linalg.norm(np.subtract(best[2].centre_lps, tn["centre_lps"]))) if best else float("inf")
        ok = dist <= MATCH_MM
        if ok:
            matched.add((best[0], best[1]))
        node_rows.append({"station": tn["station"], "kind": tn["kind"], "malignant": tn["malignant"], "true_short_axis_mm": tn["short_axis_mm"],
                          "found": ok, "distance_mm": round(dist, 2), "short_axis_mm": round(best[2].short_axis_mm, 2) if ok else None,
                          **{f"{sign}_true": bool(tn.get(key, False)) for sign, key in SIGNS.items()},
                          **{sign: (bool(getattr(best[2], sign)) if ok else None) for sign in SIGNS}})
    station_rows = []
    for st, u in uptake.items():
        sn = found.get(st)
        idx = sn.index_node if sn else None
        false = sum(1 for k, _ in enumerate(sn.nodes) if (st, k) not in matched) if sn else 0
        station_rows.append({
            "station": st, "malignant": bool(rc.truth["stations"][st]["malignant"]), "station_suv_max": u.suv_max,
            "index_suv_max": idx.suv_max if idx else 0.0, "max_short_axis_mm": max((n.short_axis_mm for n in sn.nodes), default=0.0) if sn else 0.0,
            "candidates": len(sn.nodes) if sn else 0, "false_candidates": false,
            "calls": {b.name: bool(b.calls.get(st, False)) for b in baselines},
        })
    return {"case": index, "seconds": seconds, "ct_spacing_mm": list(rc.ct_grid.spacing), "nodes": node_rows, "stations": station_rows,
            "truth_n": rc.truth["n_stage"]["tnm8"], "baseline_n": {b.name: b.n_stage.tnm8 for b in baselines}}


def sign_agreement(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per CT sign, the reader's flag against the generator's truth on matched nodes: counts, sensitivity, specificity."""
    out: dict[str, dict[str, Any]] = {}
    for sign in SIGNS:
        rows = [(n[f"{sign}_true"], n[sign]) for n in nodes if n.get(sign) is not None]
        tp = sum(1 for t, r in rows if t and r)
        fn = sum(1 for t, r in rows if t and not r)
        fp = sum(1 for t, r in rows if r and not t)
        tn = sum(1 for t, r in rows if not t and not r)
        out[sign] = {"true": tp + fn, "flagged": tp + fp, "true_positive": tp, "false_positive": fp,
                     "sensitivity": round(tp / (tp + fn), 3) if tp + fn else None,
                     "specificity": round(tn / (tn + fp), 3) if tn + fp else None}
    return out


def summarise(cases: list[dict[str, Any]]) -> dict[str, Any]:
    from nstage.training.metrics import auroc

    ok = [c for c in cases if not c.get("failed")]
    nodes = [n for c in ok for n in c["nodes"]]
    big = [n for n in nodes if n["true_short_axis_mm"] >= 8.0]
    errors = [abs(n["short_axis_mm"] - n["true_short_axis_mm"]) for n in big if n["found"]]
    rows = [r for c in ok for r in c["stations"]]
    y = np.array([r["malignant"] for r in rows], int)

    def rule(name: str) -> dict[str, float]:
        calls = np.array([r["calls"][name] for r in rows], bool)
        n_ok = np.mean([c["baseline_n"][name] == c["truth_n"] for c in ok])
        return {"sensitivity": round(float(calls[y == 1].mean()), 3), "specificity": round(float((~calls[y == 0]).mean()), 3),
                "accuracy": round(float((calls == y).mean()), 3), "auroc_of_calls": round(auroc(calls.astype(float), y), 3),
                "n_stage_accuracy_tnm8": round(float(n_ok), 3)}

    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({n["kind"] for n in big}):
        sel = [n for n in big if n["kind"] == kind]
        by_kind[kind] = {"n": len(sel), "found": round(float(np.mean([n["found"] for n in sel])), 3)}
    return {
        "cases": len(ok), "failed_cases": len(cases) - len(ok),
        "nodes_short_axis_ge_8mm": len(big),
        "found_fraction_ge_8mm": round(float(np.mean([n["found"] for n in big])), 3) if big else None,
        "found_by_kind_ge_8mm": by_kind,
        "found_fraction_all": round(float(np.mean([n["found"] for n in nodes])), 3) if nodes else None,
        "short_axis_abs_error_mm": {"median": round(float(np.median(errors)), 2), "p90": round(float(np.percentile(errors, 90)), 2)} if errors else None,
        "false_candidates_per_station": round(float(np.mean([r["false_candidates"] for r in rows])), 2),
        "candidates_per_station": round(float(np.mean([r["candidates"] for r in rows])), 2),
        "station_auroc": {"station_region_suv_max": round(auroc(np.array([r["station_suv_max"] for r in rows]), y), 3),
                          "index_node_suv_max": round(auroc(np.array([r["index_suv_max"] for r in rows]), y), 3),
                          "largest_node_short_axis": round(auroc(np.array([r["max_short_axis_mm"] for r in rows]), y), 3)},
        "baselines": {name: rule(name) for name in ("suvmax", "blood_pool", "ct_size", "combined")},
        "ct_signs_of_found_nodes_ge_8mm": sign_agreement([n for n in big if n["found"]]),
        "node_reading_seconds": {"median": round(float(np.median([c["seconds"] for c in ok])), 2), "max": round(float(np.max([c["seconds"] for c in ok])), 2)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="clinical")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7100)
    ap.add_argument("--stations", choices=("truth", "registration"), default="truth")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    configure_logging()  # the progress bar lines
    work = [(a.seed, i, a.preset, a.stations) for i in range(a.cases)]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    cases = map_all(_case, work, a.jobs, label="cases")
    result = {"measured": started, "machine": mach, "preset": a.preset, "seed": a.seed, "stations": a.stations, "jobs": a.jobs,
              "match_mm": MATCH_MM, "summary": summarise(cases), "literature": LITERATURE, "cases": cases}
    out = a.out or ROOT / "bench" / "nodes" / f"node_reading_{a.preset}_{a.stations}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
