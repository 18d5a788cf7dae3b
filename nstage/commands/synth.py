"""`nstage synth`: synthetic PET/CT studies with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from nstage.cohort_executor import add_executor_arguments, executor_options
from nstage.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synth", help="write synthetic PET/CT studies with ground truth")
    s.add_argument("out", help="output folder (one sub-folder per case, plus cohort.csv)")
    s.add_argument("--cases", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--first", type=int, default=0, help="index of the first case (to extend a cohort)")
    s.add_argument("--preset", default="small", help="small (coarse, fast) or clinical (512x512 CT)")
    s.add_argument("--vendor", default="default", help="PET header style (see config/synth/vendors.json)")
    s.add_argument("--preview", action="store_true", help="also write preview.png per case")
    add_executor_arguments(s, "cases rendered in parallel: worker processes of the embedded Dask cluster")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage.synth.case import preset_names
    from nstage.synth.cohort import write_cohort
    from nstage.synth.dicom_writer import vendor_names

    if args.preset not in preset_names():
        raise InputError(f"unknown preset {args.preset!r}; choose one of {', '.join(preset_names())}")
    if args.vendor not in vendor_names():
        raise InputError(f"unknown vendor style {args.vendor!r}; choose one of {', '.join(vendor_names())}")
    if args.cases < 1:
        raise InputError("--cases must be at least 1")
    truths = write_cohort(Path(args.out), args.cases, args.seed, args.preset, args.vendor, args.preview, executor_options(args), args.first)
    for t in truths:
        pos = [s for s, v in t["stations"].items() if v["malignant"]]
        print(f"{t['case']}: tumour {t['tumour_side']} {t['tumour']['lobe']}, {t['n_stage']['tnm8']}/{t['n_stage']['tnm9']}, "
              f"malignant stations: {', '.join(pos) or 'none'}")
    return 0
