"""A hospital's NVFlare client: the Client API loop around nstage.training.federated.protocol.SiteAgent.

Run by NVFlare's ClientAPIExecutor (in process) through the job's site_script.py. The site's data are named on the
site, never by the job: `--cohort DIR` (repeatable) and `--stations` in the simulation, or in production a JSON
file named by the site's environment variable NSTAGE_FED_SITE:

    {"cohorts": ["/data/lung-petct"], "stations": "registration", "cache": null, "jobs": 2}

The cohorts are read and cached on the site (nstage.training.workflow.cached_cohort: its own cache, its own N
stages and tumour sides) when the server's census arrives with the recipe.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nstage.errors import InputError
from nstage.training.federated.protocol import SiteAgent

log = logging.getLogger("nstage.training")
SITE_ENV = "NSTAGE_FED_SITE"
STATS = "nstage"  # the FLModel meta key of a message's statistics


def site_data(argv: list[str] | None = None) -> tuple[list[Path], str, Path | None, int, int | None, bool]:
    """(cohorts, station source, cache, jobs, rank, send_diff) from the arguments, else from $NSTAGE_FED_SITE."""
    p = argparse.ArgumentParser(prog="nstage-fed-site")
    p.add_argument("--cohort", action="append", type=Path, default=[])
    p.add_argument("--stations", default="registration", choices=["registration", "truth"])
    p.add_argument("--cache", type=Path)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--rank", type=int, help="this site's stream of augmentation and dropout draws (default: from its name)")
    p.add_argument("--send-diff", action="store_true", help="send weight changes (a privacy filter reads them)")
    a = p.parse_args(argv)
    if a.cohort:
        return a.cohort, a.stations, a.cache, a.jobs, a.rank, a.send_diff
    path = os.environ.get(SITE_ENV)
    if not path:
        raise InputError(f"no cohort: give --cohort DIR or set {SITE_ENV} to the site's JSON file")
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the site file {path}: {exc}") from exc
    return ([Path(c) for c in d["cohorts"]], str(d.get("stations", "registration")), Path(d["cache"]) if d.get("cache") else None,
            int(d.get("jobs", 1)), d.get("rank"), a.send_diff)


def main(argv: list[str] | None = None) -> None:
    """The site's loop: receive a task, answer it, until the server ends the job."""
    import nvflare.client as flare
    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType

    from nstage.training.workflow import cached_cohort

    cohorts, source, cache, jobs, rank, send_diff = site_data(argv)
    flare.init()
    if rank is None:  # distinct, stable draws per site; the simulation numbers its sites 0, 1, ...
        rank = zlib.crc32(flare.get_site_name().encode()) % 65536
    agent = SiteAgent(lambda cfg: cached_cohort(cohorts, source, cfg, cache, jobs), int(rank))
    while flare.is_running():
        received = flare.receive()
        if received is None:
            break
        task = flare.get_task_name()
        weights = {k: torch.as_tensor(np.asarray(v)) for k, v in (received.params or {}).items()}
        out, stats = agent.handle(task, weights, dict((received.meta or {}).get(STATS, {})))
        out = {k: torch.as_tensor(v) for k, v in out.items()}  # the PyTorch exchange format sends tensors only
        params_type = ParamsType.FULL
        if send_diff and task == "train":
            out = {k: v - weights[k] for k, v in out.items()}
            params_type = ParamsType.DIFF
        steps = sum(int(m.get("steps", 0)) for m in stats.get("members", [])) if task == "train" else 0
        flare.send(FLModel(params=out, params_type=params_type,
                           meta={STATS: stats, **({"NUM_STEPS_CURRENT_ROUND": max(steps, 1)} if task == "train" else {})}))
        log.info("answered %s (%d weights in, %d out)", task, len(weights), len(out))

