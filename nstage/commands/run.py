"""`nstage run -i STUDY -o OUT -m MODELS`: the whole analysis of one PET/CT study (no holoscan)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nstage.analysis.nrules import available_rule_sets

if TYPE_CHECKING:
    from nstage.pipeline import RunOptions


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run", help="analyse one PET/CT study: stations, SUV, N stage -> SEG, SR, PDF report and result.json in OUT")
    s.add_argument("-i", "--input", required=True, type=Path, help="study folder (DICOM files, any names)")
    s.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    add_analysis_arguments(s)
    s.set_defaults(func=run)


def add_analysis_arguments(s: argparse.ArgumentParser) -> None:
    """The options of the analysis itself (models, rules, side, atlases, SEG type), shared with `nstage batch`."""
    s.add_argument("-m", "--models", required=True, type=Path, help="models folder")
    s.add_argument("--rules", default="tnm", choices=available_rule_sets(), help="station-to-N rule set")
    s.add_argument("--tumour-side", choices=["R", "L"], help="side of the primary tumour (found on the images when omitted)")
    s.add_argument("--atlas", action="append", type=Path, default=[], help="atlas folder (repeat for several atlases: majority vote)")
    add_registration_argument(s)
    s.add_argument("--seg-type", default="BINARY", choices=["BINARY", "LABELMAP"],
                   help="DICOM SEG type (BINARY: accepted by every validator and viewer; LABELMAP: smaller, newer SOP class)")


def add_registration_argument(s: argparse.ArgumentParser) -> None:
    """--registration elastix|torch|auto (shared with `nstage stations`)."""
    s.add_argument("--registration", choices=["elastix", "torch", "auto"], default=None,
                   help="registration backend: elastix (CPU), torch (PyTorch; GPU when there is one), auto (torch when torch "
                   "sees a CUDA GPU, else elastix); default: `backend` of config/registration.json (elastix)")


def run_options(args: argparse.Namespace) -> RunOptions:
    """RunOptions of the parsed analysis options."""
    from nstage.pipeline import RunOptions

    return RunOptions(args.rules, args.tumour_side, tuple(args.atlas), args.registration)


def run(args: argparse.Namespace) -> int:
    from nstage.runner import run as run_study
    from nstage.summary import summary_lines

    result = run_study(args.input, args.output, args.models, run_options(args), args.seg_type)
    print("\n".join(summary_lines(result)))
    print(f"written: {', '.join(sorted(p.name for p in args.output.iterdir() if not p.name.startswith('.')))} in {args.output}")
    return 0
