"""Generator speed: one case of `nstage synth OUT --cases 1 --seed S --preset P`, this tree against a baseline checkout.

    git worktree add /tmp/synth-baseline <commit>
    python -m bench.synth.synth_speed --baseline /tmp/synth-baseline [--pairs 5] [--clinical-pairs 3] [--warmup 1] [--presets small clinical]

Each run is a whole process (start-up, rendering, DICOM and truth files), timed from outside with its
own rusage (bench/measure.py). A (this tree) and B (the baseline) run in turn, A B A B ..., and the
ratio A/B is taken pair by pair, so that a drift of the machine's speed (other work on it) cancels;
medians are quoted, with the load average before and after. Writes bench/synth/synth_speed.json; the table
of bench/synth/synth_speed.md is made from it (--md prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.machine import machine
from bench.measure import run_measured

REPO = Path(__file__).resolve().parents[2]
TARGET_S = {"small": 5.0, "clinical": 20.0}  # issue 16


def synth_command(root: Path, out: Path, seed: int, preset: str) -> list[str]:
    """`nstage synth` with the package and configuration of the checkout `root` (and this Python)."""
    return ["env", f"PYTHONPATH={root}", sys.executable, "-m", "nstage.cli", "synth", str(out), "--cases", "1", "--seed", str(seed),
            "--preset", preset]


def paired(a: list[str], b: list[str], cwd_a: Path, cwd_b: Path, pairs: int, warmup: int) -> dict:
    for _ in range(warmup):
        run_measured(a, cwd=str(cwd_a))
        run_measured(b, cwd=str(cwd_b))
    runs = []
    for _ in range(pairs):
        ra = run_measured(a, cwd=str(cwd_a))
        rb = run_measured(b, cwd=str(cwd_b))
        runs.append({"a": ra, "b": rb, "ratio_wall": round(ra["wall_s"] / rb["wall_s"], 3), "ratio_cpu": round(ra["cpu_s"] / rb["cpu_s"], 3)})

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[side][key] for r in runs), 2)

    return {
        "pairs": pairs, "warmup_pairs": warmup, "runs": runs,
        "a_wall_s": median("a", "wall_s"), "b_wall_s": median("b", "wall_s"),
        "a_cpu_s": median("a", "cpu_s"), "b_cpu_s": median("b", "cpu_s"),
        "a_peak_gb": median("a", "peak_rss_gb"), "b_peak_gb": median("b", "peak_rss_gb"),
        "ratio_wall_median": round(statistics.median(r["ratio_wall"] for r in runs), 3),
        "ratio_cpu_median": round(statistics.median(r["ratio_cpu"] for r in runs), 3),
    }


def table(result: dict) -> str:
    rows = ["| preset | A wall s (median) | B wall s (median) | A/B wall (median of pairs) | A/B CPU | A cpu s | pairs | load avg before / after | target |",
            "|---|---|---|---|---|---|---|---|---|"]
    for preset, r in result["presets"].items():
        rows.append(f"| {preset} | {r['a_wall_s']:.2f} | {r['b_wall_s']:.2f} | {r['ratio_wall_median']:.3f} | {r['ratio_cpu_median']:.3f} | "
                    f"{r['a_cpu_s']:.2f} | {r['pairs']} (+{r['warmup_pairs']} warm-up) | {r['load_before']:.1f} / {r['load_after']:.1f} | "
                    f"{TARGET_S.get(preset, float('nan')):.0f} s |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout (e.g. git worktree) of the commit to compare with")
    ap.add_argument("--presets", nargs="+", default=["small", "clinical"])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=5, help="counted pairs for small")
    ap.add_argument("--clinical-pairs", type=int, default=3, help="counted pairs for clinical")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "synth" / "synth_speed.json")
    ap.add_argument("--md", action="store_true", help="print the Markdown table")
    args = ap.parse_args()
    baseline = args.baseline.resolve()
    if not (baseline / "nstage" / "cli.py").is_file():
        raise SystemExit(f"{baseline}: not a checkout of this project")
    result = {"machine": machine(), "a": str(REPO), "b": str(baseline), "seed": args.seed, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            load_before = os.getloadavg()[0]
            a = synth_command(REPO, Path(tmp) / "a", args.seed, preset)
            b = synth_command(baseline, Path(tmp) / "b", args.seed, preset)
            r = paired(a, b, REPO, baseline, args.clinical_pairs if preset == "clinical" else args.pairs, args.warmup)
            r["load_before"], r["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
            result["presets"][preset] = r
            print(f"{preset}: A {r['a_wall_s']} s, B {r['b_wall_s']} s, A/B wall {r['ratio_wall_median']} (cpu {r['ratio_cpu_median']})", flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.md:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
