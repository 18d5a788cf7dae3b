"""`nstage run -i STUDY -o OUT -m MODELS`: the whole analysis of one PET/CT study (no holoscan)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nstage.nrules import available_rule_sets


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run", help="analyse one PET/CT study: stations, SUV, N stage -> OUT/result.json")
    s.add_argument("-i", "--input", required=True, type=Path, help="study folder (DICOM files, any names)")
    s.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    s.add_argument("-m", "--models", required=True, type=Path, help="models folder")
    s.add_argument("--rules", default="tnm", choices=available_rule_sets(), help="station-to-N rule set")
    s.add_argument("--tumour-side", choices=["R", "L"], help="side of the primary tumour (found on the images when omitted)")
    s.add_argument("--atlas", action="append", type=Path, default=[], help="atlas folder (repeat for several atlases: majority vote)")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage.pipeline import RunOptions
    from nstage.pipeline import run as run_pipeline

    result = run_pipeline(args.input, args.output, args.models, RunOptions(args.rules, args.tumour_side, tuple(args.atlas)))
    print(f"N stage: {result['n_stage']['tnm8']} (TNM 8), {result['n_stage']['tnm9']} (TNM 9); tumour side {result['tumour_side'] or 'unknown'} "
          f"({result['tumour_side_source']}); rule set {result['rule_set']}")
    print(f"{'station':>7} {'call':<9} {'prob':>5} {'SUVmax':>7} {'SUVpeak':>7} {'ml':>6}")
    for name, s in result["stations"].items():
        print(f"{name:>7} {'MALIGNANT' if s['malignant'] else 'benign':<9} {s['probability']:>5.2f} {s['suv_max']:>7.2f} {s['suv_peak']:>7.2f} {s['volume_ml']:>6.1f}")
    print("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result["timings_s"].items()))
    print(f"written: {args.output / 'result.json'}")
    return 0
