"""Routing node throughput: studies per hour through `nstage route serve` on this machine.

N synthetic `small` studies are sent back to back with storescu to a node whose results go to a
second Orthanc (the PACS); the figure is N over the time from the first job's start to the last
job's end (`--workers` pipeline runs at once, default 1). Also: per-study latency from the end of
its sending to its results being delivered, and the node's overhead per study (intake, persisting,
C-STORE) besides the pipeline run. `--mode warm` (the default: warm pipeline worker processes that
loaded model and atlas when the node started) or `command` (a fresh `nstage run` per study, as
before); `--workers 1 2` and `--mode warm command` measure every combination in turn, so their ratio
comes from one run on one machine.

python -m bench.route.route_bench [--studies 3] [--workers 1 2] [--mode warm command] [--stable-age 5]   ->  bench/route/route.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.machine import machine
from tests.route.route_harness import (
    Node,
    TestPacs,
    fast_route_config,
    send_study,
    study_uid_of,
    study_variant,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "route" / "route.json"


def measure(studies_n: int, workers: int = 1, stable_age: int = 5, seed: int = 9090, mode: str = "warm") -> dict:
    """Send `studies_n` small studies to a fresh node with `workers` runs at once (`mode` warm | command); its figures."""
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="nstage-route-bench-"))
    try:
        subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(work / "synth"), "--cases", "1", "--seed", str(seed), "--preset", "small"],
                       check=True, capture_output=True, cwd=ROOT)
        src = work / "synth" / "case_0000" / "dicom"
        studies = [study_variant(src, work / "studies" / f"s{i}") for i in range(studies_n)]  # same images, distinct studies
        pacs = TestPacs(work / "pacs").start()
        cfg = fast_route_config(work / "route.json", stable_age_s=stable_age, pipeline={"mode": mode})
        node = Node(work / "node", pacs.dest, cfg, extra_args=("--workers", str(workers)))
        try:
            node.start()
            if mode == "warm":  # steady state: the warm processes load model and atlas when the node starts
                wait_for(lambda: node.log_text().count("ready (warm-up") >= workers, 600, "the warm pipeline workers", interval_s=1.0)
            sent_at = {}
            for s in studies:
                t0 = time.time()
                assert send_study(s, node.port).returncode == 0
                sent_at[study_uid_of(s)] = (t0, time.time())
            uids = set(sent_at)
            wait_for(lambda: len([j for j in node.jobs() if j.study_uid in uids and j.state in ("done", "failed")]) == len(uids),
                     1800, "all studies", interval_s=1.0)
            jobs = [j for j in node.jobs() if j.study_uid in uids]
            log = node.log_text()
        finally:
            node.stop()
            pacs.stop()
        run_s = [float(m) for m in re.findall(r"pipeline finished in ([\d.]+) s", log)]
        warm_up_s = [float(m) for m in re.findall(r"ready \(warm-up ([\d.]+) s\)", log)]
        span = max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)
        latency = [j.finished_at - sent_at[j.study_uid][1] for j in jobs]
        per_study = span / len(jobs)
        return {
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info,
            "preset": "small", "studies": len(jobs), "states": sorted(j.state for j in jobs),
            "instances_per_study": jobs[0].n_instances, "results_sent_per_study": [len(node.outputs(j.id)) for j in jobs],
            "stable_age_s": stable_age, "workers": workers, "mode": mode,
            "warm_up_s": warm_up_s or None, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "studies_per_hour": round(3600 / per_study, 1),
            "seconds_per_study": round(per_study, 1),
            "pipeline_run_s": {"mean": round(statistics.mean(run_s), 1), "runs": run_s} if run_s else None,
            "node_overhead_per_study_s": round(per_study - statistics.mean(run_s) / workers, 2) if run_s else None,
            "send_to_results_latency_s": {"min": round(min(latency), 1), "max": round(max(latency), 1)},
            "storescu_send_s": round(statistics.mean(b - a for a, b in sent_at.values()), 2),
            "note": f"{workers} pipeline run(s) at once ({'warm worker processes' if mode == 'warm' else 'a fresh nstage run per study'}); "
                    "scale out with several nodes (docs/routing.md)",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="pipeline runs at once (`nstage route serve --workers`); several: each in turn")
    p.add_argument("--mode", nargs="+", default=["warm"], choices=["warm", "command"], help="pipeline mode(s) of the node (config/route.json)")
    p.add_argument("--stable-age", type=int, default=5)
    p.add_argument("--seed", type=int, default=9090)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    runs = []
    for mode in args.mode:
        for workers in args.workers:
            result = measure(args.studies, workers, args.stable_age, args.seed, mode)
            runs.append(result)
            info, run_s = result["machine"], result["pipeline_run_s"]
            print(f"{result['studies']} small studies, {mode}, {workers} worker(s): {result['studies_per_hour']} studies/hour "
                  f"({result['seconds_per_study']} s each; pipeline {run_s['mean'] if run_s else '?'} s, node overhead "
                  f"{result['node_overhead_per_study_s']} s); states {result['states']}; load {info['load_average_1min_at_start']} -> "
                  f"{result['load_average_1min_at_end']}", flush=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"machine: {runs[0]['machine']['cpu']}, {runs[0]['machine']['cores']} cores; written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
