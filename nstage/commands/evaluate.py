"""`nstage evaluate`: cross-validation, or held-out testing of an exported model, beside the SUV baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nstage.cohort_executor import add_executor_arguments, executor_options


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("evaluate", help="5-fold cross-validation (weak vs supervised vs SUV baselines), or held-out test with --model")
    s.add_argument("--cohort", action="append", type=Path, required=True, help="cohort folder with station labels (repeatable)")
    s.add_argument("--stations", default="registration", choices=["registration", "truth"], help="station maps (see nstage train)")
    s.add_argument("--out", type=Path, required=True, help="report folder: report.md, roc.png, evaluation.json")
    s.add_argument("--model", type=Path, help="models folder: test its exported model on the cohort (held-out) instead of cross-validating")
    s.add_argument("--train-cohort", action="append", type=Path, default=[], help="with --model: cohort to train the fully supervised upper bound on")
    s.add_argument("--train-stations", default="registration", choices=["registration", "truth"], help="station maps of --train-cohort")
    s.add_argument("--cache", type=Path, help="patch cache folder (default COHORT/.nstage_cache)")
    s.add_argument("--work", type=Path, help="checkpoint folder for the models trained here (resumable)")
    s.add_argument("--cached-only", action="store_true", help="use only the studies already in the cache (no registration here)")
    add_executor_arguments(s, "studies cached in parallel: worker processes of the embedded Dask cluster")
    s.add_argument("--config", type=Path)
    s.add_argument("--epochs", type=int, help="override the config's epochs")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage.training.workflow import evaluate_command

    s = evaluate_command(args.cohort, args.stations, args.out, args.config, args.epochs, executor_options(args), args.cache, args.model,
                         args.train_cohort, args.train_stations, args.work, not args.cached_only)
    for name, m in s["methods"].items():
        st, n = m["station"], m["n_stage"]
        print(f"{name:>11}: station acc {st['accuracy']['value']:.3f} sens {st['sensitivity']['value']:.3f} "
              f"spec {st['specificity']['value']:.3f} AUROC {st['auroc']['value']:.3f}; N-stage acc {n['accuracy']:.3f}")
    print(f"report: {args.out / 'report.md'}")
    print(json.dumps(s["mcnemar"], indent=None))
    return 0
