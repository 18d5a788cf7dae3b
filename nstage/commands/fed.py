"""`nstage fed`: federated weak training over hospitals that keep their images (NVIDIA FLARE; docs/federated.md)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from nstage.errors import InputError

FILTERS = ["none", "percentile", "svt"]


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("fed", help="federated training of the station classifier: sites keep their images (NVFlare)")
    fed = s.add_subparsers(dest="fed_command", required=True)
    sim = fed.add_parser("simulate", help="one machine: each --site is a hospital with its own cohort folder(s), NVFlare's simulator")
    sim.add_argument("--site", action="append", required=True, metavar="COHORT[,COHORT...]",
                     help="one site's cohort folder(s) with cohort.csv (repeat per site)")
    sim.add_argument("--export", type=Path, help="models folder to write the TorchScript model into (MODELS/station_cnn/)")
    sim.add_argument("--workspace", type=Path, help="NVFlare workspace (default: a new temporary folder); each site's log of what it sent lies there")
    sim.add_argument("--jobs", type=int, default=1, help="studies each site caches in parallel")
    sim.add_argument("--archive", action="store_true", help="keep every message a site sent, serialised (site-N/simulate_job/nstage_sent/)")
    _common(sim)
    sim.set_defaults(func=run_simulate)
    job = fed.add_parser("job", help="write the NVFlare job folder for a provisioned consortium (nvflare job submit)")
    job.add_argument("--out", type=Path, required=True, help="folder to write the job into")
    job.add_argument("--min-sites", type=int, default=2, help="sites the server waits for")
    job.add_argument("--archive", action="store_true", help="each site keeps every message it sent, serialised")
    _common(job)
    job.set_defaults(func=run_job)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stations", default="registration", choices=["registration", "truth"],
                   help="station maps for the patches (see nstage train)")
    p.add_argument("--config", type=Path, help="classifier config (default config/classifier.json)")
    p.add_argument("--federated-config", type=Path, help="federation settings (default config/federated.json)")
    p.add_argument("--privacy-filter", choices=FILTERS, help="override config/federated.json's privacy filter")


def _need_nvflare() -> None:
    if importlib.util.find_spec("nvflare") is None:
        raise InputError("federated training needs NVIDIA FLARE: make setup-federated (or pip install -e '.[federated]')")


def run_simulate(args: argparse.Namespace) -> int:
    _need_nvflare()
    from nstage.training.federated.workflow import simulate_command

    sites = [[Path(c) for c in s.split(",") if c] for s in args.site]
    s = simulate_command(sites, args.stations, args.export, args.config, args.federated_config, args.privacy_filter, args.workspace,
                         args.jobs, args.archive)
    members = [{k: v for k, v in m.items() if k != "history"} for m in s.get("members", [])]
    print(json.dumps({**s, "members": members}, indent=1))
    return 0


def run_job(args: argparse.Namespace) -> int:
    _need_nvflare()
    from nstage.training.federated.workflow import job_command

    folder = job_command(args.out, args.stations, args.min_sites, args.config, args.federated_config, args.privacy_filter, args.archive)
    print(f"job: {folder} (nvflare job submit -j {folder}; docs/federated.md)")
    return 0
