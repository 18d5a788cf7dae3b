"""The server's side of federated weak training: what it decides from what the sites send.

- Before the first round, the sites' counts give each member's class balance (negatives / positives of the weak
  group targets of its training cases, pooled over the sites: what one cohort's training would count).
- Each round it averages every member's weights over the sites (FedAvg, weighted by each site's training cases of
  that member; with a server optimiser, FedAvgM, the mean's change is a step of SGD with momentum) and records the
  pooled validation loss of the previous round's weights (the sites' sums over their validation folds): the round
  of the lowest pooled loss is the member's best round, as the best epoch centrally.
- Calibration pools the sites' loss sums (nstage.training.federated.calibration); the operating threshold and the
  named points are chosen on the summed out-of-fold counts (nstage.training.federated.summaries).

The result is the central recipe's FittedModel (nstage.training.ensemble): exported by the same code.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nstage.analysis.classifier.model import StationEnsemble
from nstage.errors import InputError
from nstage.training.ensemble import FittedModel, ensemble_folds
from nstage.training.federated.calibration import pooled
from nstage.training.federated.server_optimizer import ServerOptimizer
from nstage.training.federated.settings import FederatedSettings
from nstage.training.federated.summaries import (
    Summary,
    binned_auroc,
    choose_points,
    figures,
    specificity_index,
    staging_index,
    threshold_at,
)
from nstage.training.platt import NewtonFit
from nstage.training.train import _set_determinism, new_model

Weights = dict[str, np.ndarray]
RULE = ("federated cross-fitted: member f trained by FedAvg over the sites on their other folds, best round and calibration on "
        "the sites' fold f pooled; output = mean of the members' calibrated probabilities; thresholds on the summed out-of-fold "
        "counts of every site")


def pack(states: list[Weights]) -> dict[str, np.ndarray]:
    """Members' weights as one flat dict (what crosses the wire): m<f>.<parameter>."""
    return {f"m{f}.{k}": np.array(v, copy=True) for f, s in enumerate(states) for k, v in s.items()}


def unpack(params: dict[str, Any], members: int) -> list[Weights]:
    out: list[Weights] = [{} for _ in range(members)]
    for key, v in params.items():
        f, _, name = key.partition(".")
        if not f.startswith("m") or not f[1:].isdigit() or int(f[1:]) >= members:
            raise InputError(f"unexpected weight {key!r} from a site")
        out[int(f[1:])][name] = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return out


def initial_weights(cfg: dict[str, Any]) -> list[Weights]:
    """Member f's starting weights, drawn as the central training draws them (seed + f)."""
    seed, out = int(cfg["training"]["seed"]), []
    for f in range(ensemble_folds(cfg)):
        _set_determinism(seed + f)
        out.append({k: v.detach().cpu().numpy().copy() for k, v in new_model(cfg).state_dict().items()})
    return out


def fedavg(per_site: list[Weights], weights: list[float]) -> Weights:
    """The weighted mean of the sites' weights (float64 sums, back to each tensor's type); other types: the first site's.
    One site's weights come back unchanged (w * x / w is exact in float64 for float32 x)."""
    w = [float(x) for x in weights] if sum(weights) > 0 else [1.0] * len(per_site)
    total = sum(w)
    out = {}
    for k, first in per_site[0].items():
        if np.issubdtype(first.dtype, np.floating):
            out[k] = (sum(wi * s[k].astype(np.float64) for wi, s in zip(w, per_site)) / total).astype(first.dtype)
        else:
            out[k] = first.copy()
    return out


@dataclass
class MemberRecord:
    seed: int
    train_cases: int = 0
    validation_cases: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: tuple[float, int, Weights] | None = None
    pending: dict[str, Any] | None = None  # the last round's weights and train loss, awaiting their validation


class FederatedRun:
    """The server's state through one federated run."""

    def __init__(self, cfg: dict[str, Any], settings: FederatedSettings) -> None:
        self.cfg, self.settings = cfg, settings
        tcfg = cfg["training"]
        self.k = ensemble_folds(cfg)
        self.rounds = math.ceil(int(tcfg["epochs"]) / settings.local_epochs)
        self.grid = settings.grid.thresholds()
        self.weights = initial_weights(cfg)
        self.members = [MemberRecord(int(tcfg["seed"]) + f) for f in range(self.k)]
        self.pos_weights = [1.0] * self.k
        self.sites = 0
        self.cases = 0
        self.fits = [NewtonFit() for _ in range(self.k)]
        self.server_optimizer = ServerOptimizer(settings.server_lr, settings.server_momentum)

    def epochs_of(self, round_: int) -> list[int]:
        """The epoch numbers a site trains in a round (1-based rounds; the central epoch numbering)."""
        n, e = self.settings.local_epochs, int(self.cfg["training"]["epochs"])
        return list(range((round_ - 1) * n, min(round_ * n, e)))

    def take_census(self, census: list[dict[str, Any]]) -> None:
        """The sites' counts: each member's class balance, pooled; every site must fill the recipe's folds."""
        for c in census:
            if len(c["members"]) != self.k:
                raise InputError(f"a site dealt its cohort into {len(c['members'])} member(s), the recipe asks for {self.k}")
        self.sites, self.cases = len(census), sum(int(c["cases"]) for c in census)
        balance = bool(self.cfg["training"].get("class_balance", True))
        for f, m in enumerate(self.members):
            parts = [c["members"][f] for c in census]
            m.train_cases = sum(int(p["train_cases"]) for p in parts)
            m.validation_cases = sum(int(p["validation_cases"]) for p in parts)
            pos, neg = sum(int(p["positive_groups"]) for p in parts), sum(int(p["negative_groups"]) for p in parts)
            self.pos_weights[f] = float(neg) / float(pos) if balance and pos else 1.0

    def _validated(self, f: int, terms: list[dict[str, float]]) -> None:
        """The pooled validation loss of member f's pending round: history and best round, as centrally per epoch."""
        m = self.members[f]
        n = sum(int(t["n"]) for t in terms)
        val = sum(float(t["loss"]) for t in terms) / n if n else float("nan")
        p = m.pending
        assert p is not None
        m.history.append({"epoch": p["round"], "train_loss": p["train_loss"], "val_loss": val})
        if m.best is None or not np.isfinite(m.best[0]) or (np.isfinite(val) and val < m.best[0]):
            m.best = (val, p["round"], copy.deepcopy(p["weights"]))
        m.pending = None

    def take_round(self, round_: int, states: list[list[Weights]], records: list[list[dict[str, Any]]]) -> None:
        """Sites' weights and records of one round (per site, per member): validate the previous round, average this one."""
        for f, m in enumerate(self.members):
            if m.pending is not None:
                self._validated(f, [r[f]["validation"] for r in records])
            steps = sum(int(r[f]["steps"]) for r in records)
            mean = fedavg([s[f] for s in states], [float(r[f]["train_cases"]) for r in records])
            self.weights[f] = self.server_optimizer.step(f, self.weights[f], mean)
            m.pending = {"round": round_, "weights": self.weights[f],
                         "train_loss": sum(float(r[f]["train_loss_sum"]) for r in records) / max(steps, 1)}

    def take_validation(self, terms: list[list[dict[str, float]]]) -> None:
        """The last round's pooled validation loss (per site, per member)."""
        for f, m in enumerate(self.members):
            if m.pending is not None:
                self._validated(f, [t[f] for t in terms])

    def best_weights(self) -> list[Weights]:
        if any(m.best is None for m in self.members):
            raise InputError("no round was trained")
        return [m.best[2] for m in self.members]  # type: ignore[index]

    def calibration_points(self) -> list[list[tuple[float, float]]]:
        """The (a, b) each member's sites are to evaluate next (empty once its fit is done)."""
        return [[] if fit.done else list(fit.candidates) for fit in self.fits]

    @property
    def calibrating(self) -> bool:
        return bool(self.cfg["training"].get("calibrate", True)) and not all(fit.done for fit in self.fits)

    def take_calibration(self, terms: list[list[list[dict]]]) -> None:
        """The sites' calibration sums (per site, per member, per candidate)."""
        for f, fit in enumerate(self.fits):
            if not fit.done:
                fit.update(pooled([t[f] for t in terms]), self.settings.gradient_tolerance)
                if fit.rounds >= self.settings.calibration_rounds:
                    fit.done = True

    def calibrations(self) -> list[tuple[float, float]]:
        if not bool(self.cfg["training"].get("calibrate", True)):
            return [(1.0, 0.0)] * self.k
        return [fit.result for fit in self.fits]

    def _threshold_index(self, s: Summary) -> int | None:
        tcfg = self.cfg["training"]
        rule = tcfg.get("threshold", "validation")
        if rule == "staging":
            return staging_index(s.staged_right, s.maxima) if s.cases else None
        if rule == "validation":
            return specificity_index(s.benign, float(tcfg["operating_specificity"]))
        if isinstance(rule, str):
            raise InputError(f"training.threshold must be a number, staging or validation (got {rule!r})")
        return int(np.argmin(np.abs(self.grid - float(rule))))  # a fixed threshold: its nearest grid point

    def finish(self, summaries: list[list[Summary]]) -> FittedModel:
        """The fitted model from the best rounds, the calibrations and the sites' summed counts (per site, per member)."""
        tcfg = self.cfg["training"]
        per_member = [sum((s[f] for s in summaries[1:]), summaries[0][f]) for f in range(self.k)]
        oof = sum(per_member[1:], per_member[0])
        j = self._threshold_index(oof)
        thr = threshold_at(self.grid, j)
        keep = ("validation_cases", "validation_n_stage_accuracy", "validation_benign_stations", "validation_benign_specificity")
        spec_j = specificity_index(oof.benign, float(tcfg["operating_specificity"]))
        operating = {"rule": str(tcfg.get("threshold", "validation")), "out_of_fold": self.k > 1, "federated": True,
                     **{k: v for k, v in figures(oof, self.grid, j).items() if k in keep},
                     "validation_group_auroc": binned_auroc(oof.positive_groups, oof.negative_groups),
                     "specificity_rule_threshold": threshold_at(self.grid, spec_j)}
        points = choose_points(oof, self.grid, tcfg["operating_points"], j)
        models, records = [], []
        for f, (m, (a, b)) in enumerate(zip(self.members, self.calibrations())):
            net = new_model(self.cfg)
            net.load_state_dict({k: torch.as_tensor(v) for k, v in m.best[2].items()})  # type: ignore[index]
            with torch.no_grad():
                net.calibration.copy_(torch.tensor([a, b], dtype=net.calibration.dtype))
            models.append(net.eval())
            records.append({"seed": m.seed, "train_cases": m.train_cases, "validation_cases": m.validation_cases,
                            "best_epoch": m.best[1], "calibration": [a, b],  # type: ignore[index]
                            "calibration_rounds": self.fits[f].rounds,
                            "threshold_on_own_fold": threshold_at(self.grid, self._threshold_index(per_member[f])),
                            "history": m.history})
        model = StationEnsemble(models).eval() if self.k > 1 else models[0]
        train = self.cases if self.k > 1 else self.members[0].train_cases
        val = self.cases if self.k > 1 else self.members[0].validation_cases
        return FittedModel(model, thr, operating, records, train, val, points)
