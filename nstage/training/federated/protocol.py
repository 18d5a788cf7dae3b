"""The conversation between the server and the sites, task by task, whatever carries it (NVFlare: flare_server.py, flare_site.py).

Every message is a pair (weights, statistics): `weights` a flat dict of arrays named m<f>.<parameter> (or empty),
`statistics` a dict of numbers and lists of numbers. Tasks, in order:

  census       server: the recipe (config/classifier.json)          site: case counts, weak-target counts
  train        server: global weights, round, class balances       site: its weights after the round's local epochs,
                                                                         its loss sums (and those of the global weights)
  validate     server: the last round's global weights             site: loss sums on its validation folds
  calibrate    server: best weights (first time), (a, b) points     site: calibration loss, gradient, Hessian sums
  summarise    server: calibrations                                 site: counts on the threshold grid
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.ensemble import FittedModel
from nstage.training.federated.server import FederatedRun, pack, unpack
from nstage.training.federated.settings import Grid
from nstage.training.federated.site import Site
from nstage.training.federated.summaries import Summary

log = logging.getLogger("nstage.training")
Message = tuple[dict[str, Any], dict[str, Any]]
Ask = Callable[[str, dict[str, Any], dict[str, Any]], list[Message]]  # (task, weights, statistics) -> each site's reply
TASKS = ("census", "train", "validate", "calibrate", "summarise")


def federate(ask: Ask, run: FederatedRun) -> FittedModel:
    """Run the whole federated recipe through `ask`; returns the fitted model (best rounds, calibrated, thresholds)."""
    census = [stats for _, stats in ask("census", {}, {"config": run.cfg})]
    run.take_census(census)
    log.info("federated training: %d site(s), %d case(s), %d member(s), %d round(s)", run.sites, run.cases, run.k, run.rounds)
    for r in range(1, run.rounds + 1):
        replies = ask("train", pack(run.weights), {"round": r, "epochs": run.epochs_of(r), "pos_weights": run.pos_weights,
                                                   "validate_first": r > 1, "proximal_mu": run.settings.proximal_mu})
        run.take_round(r, [unpack(w, run.k) for w, _ in replies], [stats["members"] for _, stats in replies])
        log.info("round %d/%d: train loss %s", r, run.rounds, ", ".join(f"{m.pending['train_loss']:.4f}" for m in run.members if m.pending))
    run.take_validation([stats["members"] for _, stats in ask("validate", pack(run.weights), {"pos_weights": run.pos_weights})])
    first = True
    while run.calibrating:
        replies = ask("calibrate", pack(run.best_weights()) if first else {}, {"points": run.calibration_points()})
        run.take_calibration([stats["members"] for _, stats in replies])
        first = False
    g = run.settings.grid
    replies = ask("summarise", {} if not first else pack(run.best_weights()),
                  {"calibrations": run.calibrations(), "grid": [g.logit_min, g.logit_max, g.step_logit]})
    fitted = run.finish([[Summary.from_dict(s) for s in stats["members"]] for _, stats in replies])
    log.info("federated model: threshold %.3f, out-of-fold N-stage accuracy %.3f over %d site(s)", fitted.threshold,
             fitted.operating["validation_n_stage_accuracy"], run.sites)
    return fitted


class SiteAgent:
    """A site's answers to the server's tasks. `load` gives the site's cached cases for a recipe (its own cache)."""

    def __init__(self, load: Callable[[dict[str, Any]], list[CachedCase]], rank: int, device: str | None = None) -> None:
        self.load, self.rank, self.device = load, rank, device
        self.site: Site | None = None
        self.members = 0

    def handle(self, task: str, weights: dict[str, Any], stats: dict[str, Any]) -> Message:
        if task == "census":
            cfg = stats["config"]
            self.site = Site(self.load(cfg), cfg, self.rank, self.device)
            self.members = len(self.site.members)
            return {}, self.site.census()
        site = self.site
        if site is None:
            raise InputError(f"task {task!r} before the census")
        if task == "train":
            states, records = site.train_round(unpack(weights, self.members), list(stats["epochs"]), list(stats["pos_weights"]),
                                               bool(stats["validate_first"]), float(stats.get("proximal_mu", 0.0)))
            return pack(states), {"members": records}
        if task == "validate":
            return {}, {"members": site.validation_terms(unpack(weights, self.members), list(stats["pos_weights"]))}
        if task == "calibrate":
            best = unpack(weights, self.members) if weights else None
            points = [[(float(a), float(b)) for a, b in pts] for pts in stats["points"]]
            terms = site.calibration_terms(best, points)
            return {}, {"members": [[{"loss": t["loss"], "n": t["n"], "grad": [float(x) for x in t["grad"]],
                                      "hess": [[float(x) for x in row] for row in t["hess"]]} for t in member] for member in terms]}
        if task == "summarise":
            if weights:  # no calibration round ran: the best weights come now
                site.calibration_terms(unpack(weights, self.members), [[] for _ in range(self.members)])
            lo, hi, step = stats["grid"]
            grid = Grid(float(lo), float(hi), float(step)).thresholds()
            calibrations = [(float(a), float(b)) for a, b in stats["calibrations"]]
            return {}, {"members": [s.as_dict() for s in site.summaries(calibrations, grid)]}
        raise InputError(f"unknown task {task!r}")

