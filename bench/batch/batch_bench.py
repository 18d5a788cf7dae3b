"""Cohort throughput on this machine: studies per hour of `nstage batch` with 1 and 2 worker processes,
and of the routing node (`nstage route serve --workers 1|2`).

`nstage batch` runs on a fresh output folder each time over the same synthetic cohort (written once
by `nstage synth`), with the shipped model; the figure is studies over the batch's wall time (the
embedded Dask cluster's start included). The routing node's figure comes from bench/route/route_bench.py
(small studies sent back to back over DICOM, results to a test PACS).

python -m bench.batch.batch_bench [--studies 4] [--clinical-studies 2] [--presets small clinical] [--jobs 1 2] [--route-studies 3] [--no-route]
  -> bench/batch/batch.json and bench/batch/batch.md
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
OUT_JSON, OUT_MD = ROOT / "bench" / "batch" / "batch.json", ROOT / "bench" / "batch" / "batch.md"
WORK = ROOT / "bench" / "work" / "batch"  # ignored by git
SEED = 20270


def _nstage(*args: str) -> list[str]:
    return [sys.executable, "-m", "nstage.cli", *args]


def ensure_cohort(preset: str, studies: int) -> Path:
    """The synthetic cohort of a preset in bench/work (written once)."""
    cohort = WORK / f"cohort-{preset}-{studies}"
    if not (cohort / "cohort.csv").is_file():
        subprocess.run(_nstage("synth", str(cohort), "--cases", str(studies), "--seed", str(SEED), "--preset", preset, "--jobs", "2"),
                       check=True, capture_output=True, cwd=ROOT)
    return cohort


def measure_batch(cohort: Path, jobs: int, models: Path) -> dict[str, Any]:
    """One `nstage batch` over the cohort into a fresh folder: wall time, studies per hour, per-study seconds."""
    out = WORK / f"out-{cohort.name}-jobs{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    load = machine()["load_average_1min_at_start"]
    t0 = time.perf_counter()
    done = subprocess.run(_nstage("batch", "-i", str(cohort), "-o", str(out), "-m", str(models), "--jobs", str(jobs)),
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    with (out / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows if r["seconds"]]
    return {"jobs": jobs, "studies": len(rows), "ok": sum(r["status"] == "ok" for r in rows), "exit_status": done.returncode,
            "wall_s": round(wall, 1), "studies_per_hour": round(3600 * len(rows) / wall, 1),
            "study_seconds": {"mean": round(statistics.mean(seconds), 1), "min": min(seconds), "max": max(seconds)} if seconds else None,
            "load_average_1min_at_start": load}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# Cohort throughput (`python -m bench.batch.batch_bench`)", "",
             f"Measured {report['measured_at']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB "
             f"(load average at the start of each run in the tables; the machine was shared).", "",
             "## `nstage batch` (shipped model, fresh output folder, the embedded Dask cluster's start included)", "",
             "| preset | studies | worker processes | wall s | studies / hour | seconds per study (mean, in its worker) | load at start |",
             "|---|---|---|---|---|---|---|"]
    for b in report["batch"]:
        s = b["study_seconds"] or {}
        lines.append(f"| {b['preset']} | {b['studies']} | {b['jobs']} | {b['wall_s']} | **{b['studies_per_hour']}** | {s.get('mean', '-')} | "
                     f"{b['load_average_1min_at_start']} |")
    if report.get("route"):
        lines += ["", "## Routing node (`nstage route serve --workers N`, small studies over DICOM, results to a test PACS)", "",
                  "| workers | studies | studies / hour | seconds per study | pipeline run s (mean) | load at start |", "|---|---|---|---|---|---|"]
        for r in report["route"]:
            lines.append(f"| {r['workers']} | {r['studies']} | **{r['studies_per_hour']}** | {r['seconds_per_study']} | "
                         f"{(r['pipeline_run_s'] or {}).get('mean', '-')} | {r['machine']['load_average_1min_at_start']} |")
    lines += ["", report["reading"], ""]
    return "\n".join(lines)


def reading(report: dict[str, Any]) -> str:
    """The measured speed-up of the most workers over one worker, per preset and for the node."""
    parts = []
    for preset in sorted({b["preset"] for b in report["batch"]}):
        runs = {b["jobs"]: b["studies_per_hour"] for b in report["batch"] if b["preset"] == preset}
        if 1 in runs and len(runs) > 1:
            top = max(runs)
            parts.append(f"`nstage batch` {preset}: {top} workers give x{runs[top] / runs[1]:.2f} the studies per hour of 1")
    node = {r["workers"]: r["studies_per_hour"] for r in report.get("route", [])}
    if 1 in node and len(node) > 1:
        top = max(node)
        parts.append(f"routing node: {top} workers give x{node[top] / node[1]:.2f}")
    note = ("The atlas registration (Elastix) uses every core it is given, so on a machine with few cores parallel studies "
            "share the same cores; more machines (--scheduler, docs/cohorts.md) or nodes add throughput.")
    return "Measured: " + ("; ".join(parts) + ". " if parts else "") + note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=4, help="small studies")
    ap.add_argument("--clinical-studies", type=int, default=2, help="clinical studies (each takes minutes)")
    ap.add_argument("--presets", nargs="+", default=["small"], choices=["small", "clinical"])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--route-studies", type=int, default=3)
    ap.add_argument("--no-route", action="store_true", help="leave out the routing node")
    a = ap.parse_args(argv)
    report: dict[str, Any] = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), "batch": [], "route": []}
    for preset in a.presets:
        cohort = ensure_cohort(preset, a.clinical_studies if preset == "clinical" else a.studies)
        for jobs in a.jobs:
            r = {"preset": preset, **measure_batch(cohort, jobs, a.models)}
            report["batch"].append(r)
            print(json.dumps(r), flush=True)
    if not a.no_route:
        from bench.route.route_bench import measure

        for workers in a.jobs:
            r = measure(a.route_studies, workers)
            report["route"].append(r)
            print(f"route, {workers} worker(s): {r['studies_per_hour']} studies/hour", flush=True)
    report["reading"] = reading(report)
    OUT_JSON.write_text(json.dumps(report, indent=1) + "\n")
    OUT_MD.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
