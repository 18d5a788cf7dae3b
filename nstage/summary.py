"""A printed summary of one run's result.json: N stage, station table, stage times.

`python -m nstage.summary OUT_DIR` prints it for an output folder (used by `make demo`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The summary of a result.json document, line by line."""
    side = result["tumour_side"] or "unknown"
    lines = [f"N stage: {result['n_stage']['tnm8']} (TNM 8), {result['n_stage']['tnm9']} (TNM 9); tumour side {side} "
             f"({result['tumour_side_source']}); rule set {result['rule_set']}; model {result['model']['name']}",
             f"{'station':>7} {'call':<9} {'prob':>5} {'SUVmax':>7} {'SUVpeak':>7} {'ml':>6} {'node mm':>7} {'node SUV':>8} {'grade':>5}"]
    for name, s in result["stations"].items():
        node = s.get("index_node")  # older results have no node fields
        node_cols = (f" {node['short_axis_mm']:>7.1f} {node['suv_max']:>8.2f} {node['visual_grade'] or '-':>5}" if node
                     else f" {'-':>7} {'-':>8} {'-':>5}")
        lines.append(f"{name:>7} {'MALIGNANT' if s['malignant'] else 'benign':<9} {s['probability']:>5.2f} {s['suv_max']:>7.2f} "
                     f"{s['suv_peak']:>7.2f} {s['volume_ml']:>6.1f}{node_cols}")
    for name, b in result.get("baseline", {}).items():
        if "n_stage" in b:
            lines.append(f"baseline {name} ({b['rule']}): {b['n_stage']['tnm8']} / {b['n_stage']['tnm9']}")
    lines.append("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.get("timings_s", {}).items()))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nstage.summary OUT_DIR", file=sys.stderr)
        return 2
    path = Path(args[0]) / "result.json"
    if not path.exists():
        print(f"error: {path} does not exist; run the app or `nstage run` first", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(json.loads(path.read_text()))))
    outputs = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
    print(f"outputs in {path.parent}: {', '.join(outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
