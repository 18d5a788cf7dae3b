"""Whole-study time, cold and warm: `nstage run`'s function on several studies in ONE fresh process.

The first study is the cold one: its wall time runs from the interpreter's start (imports, model and
atlas loading included), as a fresh `nstage run` process pays it. The same study then runs again warm,
and the others after it: the same process, modules, model and atlas already loaded, as a batch worker or
the routing node's warm worker runs them. What a cold process costs more (`cold_extra_s`) is the cold
study against its own warm run: studies differ by more than a second between themselves (the figure
against the median warm study of the others is kept as `cold_minus_warm_median_s`); between the cold study and the warm ones the process loads the registration backend's
library as those workers' warm-up does (`nstage.runner.preload_registration_backend`; its seconds are
recorded as `warm_up_s`, outside every study; nothing to load when Elastix runs as its programs). Per study: wall seconds, CPU seconds (user + system of the process: less sensitive than
wall time to other work on a shared machine), the stage times `nstage run` records (result.json's
`timings_s`) and the process's peak memory so far (ru_maxrss); the load average at the start and end.

python -m bench.pipeline.study_time [--preset small] [--studies 2] [--seed 31337] [--registration elastix|torch]
  -> bench/pipeline/study_time_<preset>.json (and a table on stdout)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"small": {"warm_wall_s": 12.0, "cold_extra_s": 5.0, "peak_rss_gb": 2.0},
           "clinical": {"warm_wall_s": 15.0, "cold_extra_s": 5.0, "peak_rss_gb": 2.0}}


def _child(out_json: Path, started: float, models: Path, registration: str | None, studies: list[Path], outputs: Path) -> None:
    """In the measured process: run every study in turn, write one record per study to out_json."""
    from nstage.pipeline import RunOptions
    from nstage.runner import preload_registration_backend, run

    imported = time.time()
    records: list[dict[str, Any]] = []
    previous, cpu_before = started, 0.0  # the cold study's CPU time counts from the process's start
    warm_up_s = None
    for k, study in enumerate(studies):
        if k == 1:  # a warm worker's warm-up, outside the studies' times
            t0, usage = time.time(), resource.getrusage(resource.RUSAGE_SELF)
            preload_registration_backend(registration)
            warm_up_s = round(time.time() - t0, 2)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            previous, cpu_before = time.time(), usage.ru_utime + usage.ru_stime
        result = run(study, outputs / f"study_{k}", models, RunOptions(registration=registration))
        now, usage = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        records.append({"study": k, "wall_s": round(now - previous, 2), "cpu_s": round(cpu - cpu_before, 2), "stage_s": result["timings_s"],
                        "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
                        "n_stage": result["n_stage"], "registration_backend": result["registration"]["backend"]["name"],
                        "elastix_runner": result["registration"]["backend"].get("runner"),
                        "model": result["model"]["name"]})
        previous, cpu_before = now, cpu
    out_json.write_text(json.dumps({"import_s": round(imported - started, 2), "warm_up_s": warm_up_s, "studies": records}))


def measure(studies: list[Path], models: Path, registration: str | None = None) -> dict[str, Any]:
    """Run the studies in one fresh process; cold (first) and warm (the rest) figures."""
    work = Path(tempfile.mkdtemp(prefix="nstage-study-time-"))
    try:
        out_json = work / "records.json"
        started = time.time()
        cmd = [sys.executable, "-m", "bench.pipeline.study_time", "--child", str(out_json), "--started", repr(started), "--models", str(models),
               "--outputs", str(work / "out"), *(["--registration", registration] if registration else []), *map(str, studies)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out_json.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarise(preset: str, raw: dict[str, Any], load_start: float, load_end: float) -> dict[str, Any]:
    """The cold study (the first), its warm repeat (the second) and the warm median of every study but the cold run."""
    cold, again, warm = raw["studies"][0], raw["studies"][1], raw["studies"][1:]
    warm_wall = round(statistics.median(w["wall_s"] for w in warm), 2)
    others = [w["wall_s"] for w in raw["studies"][2:]]
    extra = round(cold["wall_s"] - again["wall_s"], 2)
    peak = max(s["peak_rss_gb_so_far"] for s in raw["studies"])
    target = TARGETS.get(preset, {})
    return {
        "preset": preset, "import_s": raw["import_s"], "warm_up_s": raw.get("warm_up_s"), "cold_wall_s": cold["wall_s"], "warm_wall_s_median": warm_wall,
        "cold_study_warm_s": again["wall_s"], "cold_extra_s": extra,
        "cold_minus_warm_median_s": round(cold["wall_s"] - statistics.median(others), 2) if others else None, "peak_rss_gb": peak,
        "load_average_1min": {"start": load_start, "end": load_end}, "targets": target,
        "meets_targets": bool(target) and warm_wall <= target["warm_wall_s"] and extra <= target["cold_extra_s"] and peak <= target["peak_rss_gb"],
        "studies": raw["studies"],
    }


def readme_rows(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cold study and the median warm one as rows of `make bench`'s table (wall, peak memory, stage times)."""
    cold, warm = s["studies"][0], s["studies"][1:]
    rows = {f"study_{s['preset']}_cold": cold}
    if warm:
        rows[f"study_{s['preset']}_warm"] = sorted(warm, key=lambda r: r["wall_s"])[len(warm) // 2]
    return {k: {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_gb": r["peak_rss_gb_so_far"], "stage_s": r["stage_s"], "model": r["model"],
                "registration_backend": r["registration_backend"], "load_average_1min": s["load_average_1min"]} for k, r in rows.items()}


def table(s: dict[str, Any]) -> str:
    stages = list(s["studies"][0]["stage_s"])
    lines = [f"{s['preset']}: imports {s['import_s']} s; cold {s['cold_wall_s']} s, the same study warm {s['cold_study_warm_s']} s "
             f"(cold extra {s['cold_extra_s']} s), warm {s['warm_wall_s_median']} s (median), peak {s['peak_rss_gb']} GB; load {s['load_average_1min']['start']} -> {s['load_average_1min']['end']}",
             "study " + " ".join(f"{n[:14]:>14}" for n in ["wall", *stages])]
    for r in s["studies"]:
        lines.append(f"{r['study']:>5} " + " ".join(f"{v:>14.1f}" for v in [r["wall_s"], *(r["stage_s"].get(n, 0.0) for n in stages)]))
    return "\n".join(lines)


def ensure_studies(preset: str, n: int, seed: int, work: Path) -> list[Path]:
    """n synthetic studies of a preset (written once into work)."""
    cohort = work / f"{preset}-{seed}-{n}"
    if not (cohort / "cohort.csv").is_file():
        subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(cohort), "--cases", str(n), "--seed", str(seed), "--preset", preset],
                       check=True, capture_output=True, cwd=ROOT)
    return [cohort / f"case_{k:04d}" / "dicom" for k in range(n)]


def bench(preset: str, studies_n: int = 2, seed: int = 31337, registration: str | None = None, work: Path | None = None) -> dict[str, Any]:
    """Cold and warm figures of `studies_n` studies of a preset (the first cold, then warm again, the others warm)."""
    work = work or ROOT / "bench" / "work" / "study_time"
    studies = ensure_studies(preset, studies_n, seed, work)
    info = machine()
    raw = measure([studies[0], *studies], ROOT / "models", registration)  # the cold study, then it again warm, then the others
    result = summarise(preset, raw, info["load_average_1min_at_start"], round(os.getloadavg()[0], 2))
    return {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": info, "seed": seed,
            "registration": registration or "config default", **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small", choices=["small", "clinical"])
    p.add_argument("--studies", type=int, default=2, help="studies in the one process (the first runs cold, then again warm)")
    p.add_argument("--seed", type=int, default=31337)
    p.add_argument("--registration", choices=["elastix", "torch", "auto"])
    p.add_argument("--out", type=Path, help="result file (default bench/pipeline/study_time_<preset>.json)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    p.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--outputs", type=Path, help=argparse.SUPPRESS)
    p.add_argument("study", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.started, args.models, args.registration, args.study, args.outputs)
        return 0
    if args.studies < 1:
        p.error("--studies must be at least 1 (run cold, then warm)")
    result = bench(args.preset, args.studies, args.seed, args.registration)
    out = args.out or ROOT / "bench" / "pipeline" / f"study_time_{args.preset}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores")
    print(table(result))
    print(f"written: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
