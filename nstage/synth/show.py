"""Print a synthetic case's truth as a person reads it: N stage and the station table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nstage.errors import InputError


def format_truth(truth: dict[str, Any]) -> str:
    t = truth["tumour"]
    lines = [
        f"{truth['case']} (synthetic): tumour {truth['tumour_side']} {t['lobe']} {t['diameter_mm']:.0f} mm SUV {t['suv']:.1f}",
        f"N stage: {truth['n_stage']['tnm8']} (TNM 8), {truth['n_stage']['tnm9']} (TNM 9)",
        "",
        f"{'station':>7}  {'truth':<9}  {'nodes':>5}  {'max short axis':>14}  {'max node SUV':>12}  kinds",
    ]
    for name, s in truth["stations"].items():
        lines.append(f"{name:>7}  {'MALIGNANT' if s['malignant'] else 'benign':<9}  {s['n_nodes']:>5}  {s['max_short_axis_mm']:>11.1f} mm  "
                     f"{s['max_node_suv']:>12.2f}  {', '.join(s['node_kinds'])}")
    lines += ["", "reasons: " + "; ".join(truth.get("n_stage_reasons", [])) if truth.get("n_stage_reasons") else ""]
    return "\n".join(lines)


def show(case_dir: Path) -> str:
    path = case_dir / "truth.json"
    if not path.is_file():
        raise InputError(f"{case_dir}: no truth.json (is this a case folder written by `nstage synth`?)")
    return format_truth(json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("error: usage: python -m nstage.synth.show CASE_DIR", file=sys.stderr)
        return 2
    try:
        print(show(Path(args[0])))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
