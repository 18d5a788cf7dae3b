"""`make bench`: run the quick benchmarks, collect every current result of the bench groups into bench/results.json,
rewrite the per-stage table of bench/pipeline/README.md and the README's rows of the figures measured here.

Figures depend on the machine (recorded with them); compare ratios within one run.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.machine import machine
from bench.measure import run_measured

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
NSTAGE = [sys.executable, "-m", "nstage.cli"]


def bench_synth(work: Path) -> dict[str, object]:
    """Generator speed, 1 process: 2 small cases and 1 clinical case (issue 16 targets: 5 s a small case, 20 s a clinical one)."""
    out: dict[str, object] = {}
    small = run_measured(NSTAGE + ["synth", str(work / "small"), "--cases", "2", "--seed", "31337", "--preset", "small"], cwd=str(ROOT))
    out["synth_small_2_cases"] = {**small, "target_wall_s": 10}
    clinical = run_measured(NSTAGE + ["synth", str(work / "clinical"), "--cases", "1", "--seed", "31337", "--preset", "clinical"], cwd=str(ROOT))
    out["synth_clinical_1_case"] = {**clinical, "target_wall_s": 20}
    truth = json.loads((work / "clinical" / "case_0000" / "truth.json").read_text())
    out["synth_clinical_stage_s"] = truth["timings_s"]
    return out


def bench_baseline() -> dict[str, object]:
    """SUVmax >= 2.5 rule inside true station regions on the calibration test's cohort (50 small cases)."""
    from nstage.synth.calibration import station_rows, threshold_rule_performance
    from tests.cohort_eval import COHORT_CASES, COHORT_SEED

    perf = threshold_rule_performance(station_rows(COHORT_SEED, COHORT_CASES, "small", jobs=2))
    return {"suv25_on_true_stations_small_cohort": {**perf, "literature": {"cochrane_CD009519": [0.77, 0.90], "zhao_2012_per_station": [0.61, 0.92]},
                                                      "target": {"sensitivity": [0.60, 0.85], "specificity": [0.85, 0.93]}}}


def bench_pipeline(work: Path) -> dict[str, object]:
    """`nstage run` and the MONAI Deploy app end to end on the `small` and `clinical` cases of bench_synth.

    Targets (issue 7): clinical case on 2 CPU cores <= 90 s, peak memory <= 4 GB.
    """
    models = ROOT / "models"
    out: dict[str, object] = {}
    for preset, folder in (("small", work / "small" / "case_0000"), ("clinical", work / "clinical" / "case_0000")):
        for runner, cmd in (("nstage_run", NSTAGE + ["run"]), ("app", [sys.executable, str(ROOT / "app.py")])):
            res = work / f"out-{runner}-{preset}"
            measured = run_measured(cmd + ["-i", str(folder / "dicom"), "-o", str(res), "-m", str(models)], cwd=str(ROOT))
            result = json.loads((res / "result.json").read_text())
            entry = {**measured, "stage_s": result["timings_s"], "model": result["model"]["name"]}
            if preset == "clinical":
                entry.update(target_wall_s=90, target_peak_rss_gb=4.0)
            out[f"{runner}_{preset}"] = entry
    return out


def bench_study_time() -> dict[str, object]:
    """Cold and warm whole-study times per stage with peak memory, in one process (bench/pipeline/study_time.py).

    Targets (issue 41, 2 CPU cores): warm small <= 12 s, warm clinical <= 15 s, cold at most 5 s more, peak <= 2 GB.
    """
    from bench.pipeline.study_time import bench, readme_rows

    out: dict[str, object] = {}
    for preset, studies in (("small", 3), ("clinical", 2)):
        summary = bench(preset, studies)
        out[f"study_time_{preset}"] = {k: v for k, v in summary.items() if k != "studies"}
        out.update(readme_rows(summary))
    return out


def bench_route() -> dict[str, object]:
    """The routing node's studies per hour with 1 and 2 warm workers (bench/route/route_bench.py; target: >= 200 small studies/hour with one)."""
    from bench.route.route_bench import measure

    out: dict[str, object] = {}
    for workers in (1, 2):
        r = measure(3, workers)
        out[f"route_{workers}_worker{'s' if workers > 1 else ''}"] = {
            k: r[k] for k in ("studies", "states", "workers", "mode", "studies_per_hour", "seconds_per_study", "pipeline_run_s",
                              "node_overhead_per_study_s", "warm_up_s", "load_average_1min_at_end")} | {
            "load_average_1min_at_start": r["machine"]["load_average_1min_at_start"], "target_studies_per_hour": 200 if workers == 1 else None}
    return out


GROUPS = ("ingest", "stationmap", "analysis", "nodes", "classifier", "outputs", "pipeline", "batch", "route", "synth")
PAGE = ROOT / "bench" / "pipeline" / "README.md"  # holds the per-stage table of the end-to-end runs
README = ROOT / "README.md"  # its figures table holds the rows marked <!-- bench:KEY -->

# The README rows `make bench` measures: results key -> (figure, the bench page that holds its method and history).
HEADLINE: dict[str, tuple[str, str]] = {
    "nstage_run_clinical": ("`nstage run`, one `clinical` study, its own process: wall time; peak memory", "pipeline"),
    "app_clinical": ("the MONAI Deploy app (`app.py`), the same study: wall time; peak memory", "pipeline"),
    "study_time_clinical": ("a `clinical` study in one process (`bench.pipeline.study_time`): cold (the first); warm (median); peak memory", "pipeline"),
    "route_1_worker": ("routing node, `small` studies, one warm worker: studies per hour", "route"),
}


def collected() -> dict[str, object]:
    """Every current result file of the bench groups (bench/<group>/*.json; the long benchmarks write them, each
    with its machine and date). Per-case records (a top-level "cases") stay in their file."""
    out: dict[str, object] = {}
    for group in GROUPS:
        for path in sorted((ROOT / "bench" / group).glob("*.json")):
            data = json.loads(path.read_text())
            rel = path.relative_to(ROOT).as_posix()
            out[path.stem] = {"file": rel, **({k: v for k, v in data.items() if k != "cases"} if isinstance(data, dict) else {"data": data})}
    return out


def stage_table(results: dict[str, object]) -> str:
    """Markdown table of the end-to-end runs (per-stage times, peak memory), with the machine."""
    m = results["machine"]
    assert isinstance(m, dict)
    lines = [f"Measured {results['measured_at']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB "
             f"(load average {m['load_average_1min_at_start']} at start); `make bench` rewrites this table.", "",
             "| run | model | wall s | peak GB | load s | registration s | measurements s | tumour side s | node reading s | classifier s | SEG s | SR s | report s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, v in results.items():
        if not (isinstance(v, dict) and "stage_s" in v):
            continue
        st = v["stage_s"]
        cells = [st.get(k) for k in ("load study", "stations (atlas registration)", "station measurements", "tumour side", "node reading",
                                     "station classifier", "SEG", "SR", "report")]
        lines.append(f"| {key} | {v['model']} | {v['wall_s']} | {v['peak_rss_gb']} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells) + " |")
    return "\n".join(lines)


def headline_rows(results: dict[str, object]) -> dict[str, str]:
    """The README rows of this run, by results key: figure, value, machine and date, the bench page."""
    m = results["machine"]
    assert isinstance(m, dict)
    where = f"{m['cpu']}, {m['cores']} cores, load {m['load_average_1min_at_start']}, {str(results['measured_at'])[:10]} (`make bench`)"
    rows: dict[str, str] = {}
    for key, (figure, group) in HEADLINE.items():
        v = results.get(key)
        if not isinstance(v, dict):
            continue
        if "studies_per_hour" in v:
            value = f"{v['studies_per_hour']} per hour"
        elif "warm_wall_s_median" in v:
            value = f"{v['cold_wall_s']} s; {v['warm_wall_s_median']} s; {v['peak_rss_gb']} GB"
        else:
            registration = v["stage_s"].get("stations (atlas registration)")
            value = f"{v['wall_s']} s; {v['peak_rss_gb']} GB" + ("" if registration is None else f" (registration {registration:.1f} s)")
        rows[key] = f"| {figure} <!-- bench:{key} --> | {value} | {where} | [{group}](bench/{group}/README.md) |"
    return rows


def write_stage_table(table: str, page: Path = PAGE) -> None:
    """Replace the text between the bench markers of the page."""
    text = page.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        page.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def write_headline_rows(rows: dict[str, str], readme: Path = README) -> None:
    """Replace each README line marked <!-- bench:KEY --> with this run's row for KEY (other lines as they are)."""
    marker = re.compile(r"<!-- bench:([a-z0-9_]+) -->")
    lines = readme.read_text().split("\n")
    for i, line in enumerate(lines):
        found = marker.search(line)
        if found and found.group(1) in rows:
            lines[i] = rows[found.group(1)]
    readme.write_text("\n".join(lines))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="nstage-bench-"))
    try:
        results: dict[str, object] = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
        results.update(bench_synth(work))
        results.update(bench_pipeline(work))
        results.update(bench_study_time())
        results.update(bench_route())
        results.update(bench_baseline())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["collected"] = collected()
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_stage_table(stage_table(results))
    write_headline_rows(headline_rows(results))
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores")
    print(f"{'benchmark':<34} {'wall s':>8} {'cpu s':>8} {'peak GB':>8} {'target s':>9}")
    for k, v in results.items():
        if isinstance(v, dict) and "wall_s" in v:
            print(f"{k:<34} {v['wall_s']:>8} {v['cpu_s']:>8} {v['peak_rss_gb']:>8} {v.get('target_wall_s', ''):>9}")
    for k in ("route_1_worker", "route_2_workers"):
        r = results[k]
        print(f"{k:<34} {r['studies_per_hour']} studies/hour (target {r['target_studies_per_hour'] or '-'})")
    b = results["suv25_on_true_stations_small_cohort"]
    print(f"SUVmax>=2.5 on true stations: sensitivity {b['sensitivity']:.3f}, specificity {b['specificity']:.3f} "
          f"({b['n_malignant']} malignant / {b['n_benign']} benign stations)")
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
