"""Loading a study (index, select, CT and SUV volumes): uncompressed before and after the reader for
compressed and enhanced objects, and the decode cost of JPEG Lossless SV1.

`python -m bench.ingest.ingest_bench [--before COMMIT] [--runs 7] [--preset clinical] [--seed 21000]`

Three loaders run in turn, pair by pair (A B C A B C ...), each a fresh process timing
``load_study`` alone (its imports not counted):

- ``now``: this tree on the uncompressed study;
- ``before``: the tree at COMMIT (a git worktree, by default the last commit before the reader for
  enhanced objects) on the same study;
- ``jpeg``: this tree on the study re-encoded with dcmtk's ``dcmcjpeg +e1``.

Writes bench/ingest/ingest.json and prints the medians and the paired ratios now/before and jpeg/now.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.machine import machine
from tests.encodings import reencode_study

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BEFORE = "6d9afdb"  # the dependencies commit: the last tree before the multi-frame reader
TIME_ONE = ("import sys, time\nimport nstage\nfrom nstage.ingest.study import load_study\n"
            "t = time.perf_counter(); load_study(sys.argv[1]); print(nstage.__file__, time.perf_counter() - t)\n")


def _study(preset: str, seed: int, root: Path) -> Path:
    case = root / f"{preset}_s{seed}" / "case_0000"
    if not (case / "dicom").is_dir():
        cmd = [sys.executable, "-m", "nstage.cli", "synth", str(case.parent), "--cases", "1", "--seed", str(seed), "--preset", preset]
        subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    return case / "dicom"


def _worktree(commit: str, root: Path) -> Path:
    tree = root / f"tree_{commit}"
    if not tree.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], check=True, cwd=REPO, capture_output=True)
    return tree


def _time(study: Path, code_root: Path) -> float:
    done = subprocess.run([sys.executable, "-c", TIME_ONE, str(study)], check=True, capture_output=True, text=True, cwd=code_root,
                          env={**os.environ, "PYTHONPATH": str(code_root)})
    package, seconds = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert Path(package).is_relative_to(code_root), f"{package} was imported, not the tree at {code_root}"
    return float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=DEFAULT_BEFORE)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--preset", default="clinical")
    ap.add_argument("--seed", type=int, default=21000)
    ap.add_argument("--work", type=Path, default=REPO / "data" / "bench" / "ingest")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    study = _study(a.preset, a.seed, a.work)
    jpeg = a.work / f"{a.preset}_s{a.seed}_jpeg_lossless_sv1"
    if not jpeg.is_dir():
        reencode_study(study, jpeg, "jpeg-lossless-sv1")
    before = _worktree(a.before, a.work)
    loaders = {"now": (study, REPO), "before": (study, before), "jpeg": (jpeg, REPO)}
    for s, root in loaders.values():  # warm-up: file cache, bytecode
        _time(s, root)
    times: dict[str, list[float]] = {k: [] for k in loaders}
    for _ in range(a.runs):
        for name, (s, root) in loaders.items():
            times[name].append(_time(s, root))
    ratio = {"now/before": [n / b for n, b in zip(times["now"], times["before"])],
             "jpeg/now": [j / n for j, n in zip(times["jpeg"], times["now"])]}
    size = {k: sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) for k, d in (("uncompressed", study), ("jpeg", jpeg))}
    out = {
        "what": "load_study (index, select, CT HU and PET SUV volumes) of one synthetic study, in a fresh process each run",
        "machine": machine(), "preset": a.preset, "seed": a.seed, "runs": a.runs, "before_commit": a.before,
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "min_max_s": {k: [round(min(v), 3), round(max(v), 3)] for k, v in times.items()},
        "paired_ratio_median": {k: round(statistics.median(v), 3) for k, v in ratio.items()},
        "paired_ratio_min_max": {k: [round(min(v), 3), round(max(v), 3)] for k, v in ratio.items()},
        "study_mb": {k: round(v / 1e6, 1) for k, v in size.items()},
    }
    (REPO / "bench" / "ingest" / "ingest.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
