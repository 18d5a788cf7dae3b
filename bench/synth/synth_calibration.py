"""The generator's calibration table: each sign read alone against its published strength.

`python -m bench.synth.synth_calibration [--cases 150] [--seed 16300] [--preset small] [--jobs 2]`
renders the cases in memory (no DICOM), measures every row of config/synth/calibration.json with
nstage.synth.calibration (station rules on the true regions, node uptake by size, density, the
benign patterns, the cross-validated oracle, and the sphere phantom at the clinical preset's PET)
and writes bench/synth/synth_calibration.json and bench/synth/synth_calibration.md (the table
bench/synth/README.md quotes). The reported seed (16600) was drawn after the last parameter change; development seeds 31-33,
and seeds 16000-16400 were looked at along the way (docs/synthetic-calibration.md).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.machine import machine
from nstage.progress import configure_logging

ROOT = Path(__file__).resolve().parents[2]


def markdown(result: dict[str, Any]) -> str:
    """The table of targets, measured values and sources."""
    m = result["machine"]
    lines = [
        f"Generator calibration: {result['cases']} rendered `{result['preset']}` cases (seed {result['seed']}), "
        f"{result['stations']} stations ({result['malignant_stations']} malignant); phantom at the `clinical` preset's PET. "
        f"Measured {result['measured']} on {m['cpu']} ({m['cores']} cores), {result['wall_s']:.0f} s.",
        "",
        "| row | measured | target | inside | source |",
        "|---|---|---|---|---|",
    ]
    for r in result["table"]:
        target = "" if r["range"] is None else f"{r['range'][0]:g}-{r['range'][1]:g}"
        inside = {True: "yes", False: "**no**", None: ""}[r["inside"]]
        count = f" (n={r['n']})" if "n" in r else ""
        lines.append(f"| {r['row']} | {r['measured']:.3f}{count} | {target} | {inside} | {r['source']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from nstage.synth.calibration import calibration_table, cohort_rows
    from nstage.synth.case import presets_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=150)
    ap.add_argument("--seed", type=int, default=16300)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "synth" / "synth_calibration.json")
    a = ap.parse_args(argv)
    configure_logging()  # the progress bar lines
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    t0 = time.perf_counter()
    cohort = cohort_rows(a.seed, a.cases, a.preset, a.jobs, progress=True)
    table = calibration_table(cohort, presets_config()["presets"]["clinical"])
    stations = [r for c in cohort for r in c.stations]
    result = {"measured": started, "machine": mach, "preset": a.preset, "seed": a.seed, "cases": a.cases, "jobs": a.jobs,
              "wall_s": round(time.perf_counter() - t0, 1), "stations": len(stations),
              "malignant_stations": sum(r.malignant for r in stations), "table": table,
              "outside": [r["row"] for r in table if r["inside"] is False]}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
