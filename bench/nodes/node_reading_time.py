"""How long node reading adds to a clinical case: read_nodes as the pipeline calls it, timed in process.

`python -m bench.nodes.node_reading_time [--cases 3] [--seed 7000] [--runs 3]` renders the cases in memory
(clinical preset, generator station maps), then times nstage.analysis.nodes.read_nodes with the
pipeline's settings `runs` times per case and writes bench/nodes/node_reading_time.json with the
machine and its load. Run it on a quiet machine: the figure is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    from nstage.analysis.nodes import read_nodes
    from nstage.analysis.tumour_side import find_tumour_side
    from nstage.progress import StageTimer
    from nstage.stations import load_stations
    from nstage.synth.case import render_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "nodes" / "node_reading_time.json")
    a = ap.parse_args(argv)
    names = {s.label: s.station for s in load_stations()}
    rows = []
    for index in range(a.cases):
        rc = render_case(f"case_{index:04d}", a.seed, index, "clinical", "default", None, StageTimer())
        pool = float(rc.truth["pet"]["tissue_suv"]["arterial_blood"])
        side = find_tumour_side(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, rc.stations, pool)
        tumour = side.primary.suv_max if side.primary else None
        seconds = []
        for _ in range(a.runs):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            read_nodes(rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, rc.stations, names, pool, tumour)
            seconds.append(round(time.perf_counter() - t0, 2))
        rows.append({"case": index, "ct_shape": list(rc.ct_grid.shape), "seconds": seconds, "load_average_1min_before_last_run": round(load, 2)})
        print(rows[-1])
    result = {"machine": machine(), "what": f"read_nodes as the pipeline calls it on synthetic clinical cases (seed {a.seed}, generator station maps), "
              f"in-process wall time, {a.runs} runs each", "cases": rows}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
