"""`nstage train`: train the station classifier on a cohort (weak N-stage labels, or station labels)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from nstage.cohort_executor import add_executor_arguments, executor_options


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train the PET/CT station classifier on cohort(s) (runs under torchrun too)")
    s.add_argument("--cohort", action="append", type=Path, required=True, help="cohort folder with cohort.csv (repeatable)")
    s.add_argument("--stations", default="registration", choices=["registration", "truth"],
                   help="station maps for the patches: atlas registration as at inference (default), or the generator's truth (synthetic only)")
    s.add_argument("--cache", type=Path, help="patch cache folder (default COHORT/.nstage_cache)")
    add_executor_arguments(s, "studies cached in parallel: worker processes of the embedded Dask cluster")
    s.add_argument("--config", type=Path, help="classifier config (default config/classifier.json)")
    s.add_argument("--out", type=Path, help="checkpoint folder (checkpoint.pt every epoch, or member_F/checkpoint.pt per ensemble member; training.json)")
    s.add_argument("--resume", action="store_true", help="continue from the checkpoint(s) in OUT")
    s.add_argument("--epochs", type=int, help="override the config's epochs")
    s.add_argument("--supervised", action="store_true", help="fully supervised with station labels (upper bound only)")
    s.add_argument("--export", type=Path, help="models folder to write the TorchScript model into (MODELS/station_cnn/)")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage.training.workflow import train_command

    s = train_command(args.cohort, args.stations, args.out, args.export, args.config, args.epochs, args.supervised,
                      args.resume, executor_options(args), args.cache)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        members = [{k: v for k, v in m.items() if k != "history"} for m in s.get("members", [])]  # histories: OUT/training.json
        print(json.dumps({**{k: v for k, v in s.items() if k != "history"}, "members": members}, indent=1))
    return 0
