"""`nstage batch -i STUDIES_ROOT -o OUT_ROOT -m MODELS [--jobs N | --scheduler ADDRESS]`: every study of a folder through `nstage run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from nstage.cohort_executor import add_executor_arguments, executor_options
from nstage.commands.run import add_analysis_arguments, run_options


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("batch", help="analyse every study of a folder (resumable; local worker processes or a Dask cluster) -> OUT/<study>/, OUT/summary.csv")
    s.add_argument("-i", "--input", required=True, type=Path,
                   help="studies root: one sub-folder per study (its DICOM files, or a dicom/ folder in it as `nstage synth` writes)")
    s.add_argument("-o", "--output", required=True, type=Path, help="output root: OUT/<study>/ as `nstage run` writes it, OUT/summary.csv")
    add_analysis_arguments(s)
    add_executor_arguments(s, "studies analysed at once: worker processes of the embedded Dask cluster")
    s.add_argument("--retry-failed", action="store_true", help="run again the studies that failed on bad input even if their input is unchanged")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every study finished, 1 when some failed (their rows in summary.csv carry the error line)."""
    from nstage.batch.cohort_run import run_batch
    from nstage.batch.metrics import metrics_lines

    report = run_batch(args.input, args.output, args.models, run_options(args), executor_options(args), args.seg_type, args.retry_failed)
    print(f"{report.studies} studies: {report.ran} run now, {report.skipped} skipped (finished before, or failed on unchanged input), "
          f"{len(report.failed)} failed{': ' + ', '.join(report.failed) if report.failed else ''}")
    if report.metrics:
        print("\n".join(metrics_lines(report.metrics)))
    print(f"written: {', '.join(str(p) for p in report.written)}")
    return 1 if report.failed else 0
