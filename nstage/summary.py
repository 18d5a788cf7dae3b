"""A printed summary of one run's result.json: N stage, station table, stage times.

`python -m nstage.summary OUT_DIR [--truth truth.json]` prints it for an output folder (used by
`make demo`); with a synthetic study's truth.json the generator's truth stands beside every call, and the
summary ends with the model's N stage and the truth side by side.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _baseline_calls(result: Mapping[str, Any]) -> dict[str, str]:
    """Station -> letters of the baselines calling it malignant (the report's letters, config/report.json)."""
    from nstage.paths import config_dir

    letters = json.loads((config_dir() / "report.json").read_text())["texts"]["baseline_letters"]
    out = {s: "" for s in result["stations"]}
    for name, b in result.get("baseline", {}).items():
        for station, c in (b.get("stations") or {}).items():
            if station in out and c.get("malignant"):
                out[station] += letters.get(name, name[:1].upper())
    return out


def _true_metastases_line(truth: Mapping[str, Any], order: list[str]) -> str:
    """The generator's malignant nodes (station, true short axis, true SUV), in station order: why a call was
    missed shows here (a small node below the blood pool is occult on PET/CT, for the model and every reader)."""
    rank = {name: i for i, name in enumerate(order)}
    nodes = sorted((n for n in truth.get("nodes", []) if n.get("malignant")),
                   key=lambda n: (rank.get(n.get("station"), len(rank)), -float(n["short_axis_mm"])))
    listed = "; ".join(f"{n.get('station', '?')} {float(n['short_axis_mm']):.1f} mm SUV {float(n['suv']):.2f}" for n in nodes)
    return f"true metastatic nodes (generator: short axis, SUV): {listed or 'none'}"


def summary_lines(result: Mapping[str, Any], truth: Mapping[str, Any] | None = None) -> list[str]:
    """The summary of a result.json document, line by line (with the generator's truth when given)."""
    side = result["tumour_side"] or "unknown"
    lines = [f"N stage: {result['n_stage']['tnm8']} (TNM 8), {result['n_stage']['tnm9']} (TNM 9); tumour side {side} "
             f"({result['tumour_side_source']}); rule set {result['rule_set']}; model {result['model']['name']}"]
    if truth is not None:
        tn = truth.get("n_stage", {})
        lines.append(f"truth (generator): {tn.get('tnm8', '?')} (TNM 8), {tn.get('tnm9', '?')} (TNM 9); tumour side "
                     f"{truth.get('tumour_side', '?')}; model {'right' if tn.get('tnm8') == result['n_stage']['tnm8'] else 'WRONG'} (TNM 8)")
        lines.append(_true_metastases_line(truth, list(result["stations"])))
    t_st = (truth or {}).get("stations", {})
    letters = _baseline_calls(result)
    lines.append(f"{'station':>7} {'call':<9} {'prob':>5} {'SUVmax':>7} {'SUVpeak':>7} {'ml':>6} {'node mm':>7} {'node SUV':>8} {'grade':>5}"
                 f" {'baselines':>9}" + (f" {'truth':<9}" if truth is not None else ""))
    for name, s in result["stations"].items():
        node = s.get("index_node")  # older results have no node fields
        node_cols = (f" {node['short_axis_mm']:>7.1f} {node['suv_max']:>8.2f} {node['visual_grade'] or '-':>5}" if node
                     else f" {'-':>7} {'-':>8} {'-':>5}")
        line = (f"{name:>7} {'MALIGNANT' if s['malignant'] else 'benign':<9} {s['probability']:>5.2f} {s['suv_max']:>7.2f} "
                f"{s['suv_peak']:>7.2f} {s['volume_ml']:>6.1f}{node_cols} {letters.get(name) or '-':>9}")
        if truth is not None:
            t = t_st.get(name, {}).get("malignant")
            line += " " + ("-" if t is None else ("MALIGNANT" if t else "benign"))
        lines.append(line)
    lines.append("baselines: S SUVmax, B blood pool, C CT size, R combined reader (the stations each calls malignant)")
    for name, b in result.get("baseline", {}).items():
        if "n_stage" in b:
            lines.append(f"baseline {name} ({b['rule']}): {b['n_stage']['tnm8']} / {b['n_stage']['tnm9']}")
    lines.append("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.get("timings_s", {}).items()))
    return lines


def side_by_side_lines(result: Mapping[str, Any], truth: Mapping[str, Any]) -> list[str]:
    """The model's N stage and the generator's truth side by side, one line per edition (the summary's last lines)."""
    lines = [f"{'N stage':<8} {'model':<6} truth (generator)"]
    for edition, label in (("tnm8", "TNM 8"), ("tnm9", "TNM 9")):
        model, true = result["n_stage"][edition], truth.get("n_stage", {}).get(edition, "?")
        lines.append(f"{label:<8} {model:<6} {true:<6} {'right' if model == true else 'WRONG'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    truth_path = None
    if "--truth" in args:
        i = args.index("--truth")
        truth_path = Path(args[i + 1]) if i + 1 < len(args) else None
        del args[i:i + 2]
    if len(args) != 1:
        print("usage: python -m nstage.summary OUT_DIR [--truth truth.json]", file=sys.stderr)
        return 2
    path = Path(args[0]) / "result.json"
    if not path.exists():
        print(f"error: {path} does not exist; run the app or `nstage run` first", file=sys.stderr)
        return 2
    if truth_path is not None and not truth_path.is_file():
        print(f"error: truth file {truth_path} does not exist", file=sys.stderr)
        return 2
    truth = json.loads(truth_path.read_text()) if truth_path else None
    print("\n".join(summary_lines(json.loads(path.read_text()), truth)))
    outputs = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("."))
    print(f"outputs in {path.parent}: {', '.join(outputs)}")
    if truth is not None:
        print("\n".join(side_by_side_lines(json.loads(path.read_text()), truth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
