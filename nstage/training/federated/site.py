"""One hospital's side of federated weak training: its own cohort, its own cache, its own weak targets.

The site deals its cohort into the recipe's folds as `nstage train` deals a whole cohort
(nstage.training.ensemble.fit: member f trains on the other folds and validates on fold f; one fold: a
`validation_fraction` split). Every round it starts each member from the global weights, trains it one local
epoch exactly as an epoch of nstage.training.train.train (same batches, augmentation and dropout draws from
(seed + f, epoch, rank)), and returns the weights. It also returns only sums and counts: its loss terms on its
validation fold, the calibration loss's sums, and its out-of-fold counts on the threshold grid
(nstage.training.federated.summaries). No probability, image or identifier of a patient leaves it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from nstage.analysis.classifier.model import StationNet
from nstage.analysis.classifier.settings import PatchSettings
from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.ensemble import ensemble_folds
from nstage.training.federated.calibration import site_terms
from nstage.training.federated.summaries import Summary, summarise
from nstage.training.splits import split_validation, stratified_folds
from nstage.training.threads import training_threads
from nstage.training.train import (
    Example,
    _batch,
    _case_logits,
    _case_losses,
    _pooling,
    device_for,
    new_model,
    param_groups,
    predict,
    predict_logits,
    prepare,
)

log = logging.getLogger("nstage.training")
State = dict[str, torch.Tensor]


def check_recipe(cfg: dict[str, Any]) -> None:
    """Refuse what the federation does not do: a moving average of the weights (off in the shipped config)."""
    tcfg = cfg["training"]
    if float(tcfg.get("ema_decay", 0.0) or 0.0) > 0:
        raise InputError("federated training does not average weights over steps: set training.ema_decay to 0 (the shipped config)")


def member_splits(cases: list[CachedCase], k: int, seed: int, validation_fraction: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training, validation) case indices of each member, as nstage.training.ensemble.fit deals a cohort."""
    if k == 1:
        return [split_validation(cases, np.arange(len(cases)), validation_fraction, seed)]
    if len(cases) < k:
        raise InputError(f"a site of {len(cases)} case(s) cannot fill the recipe's {k} folds: give it more cases or use ensemble_folds 1")
    return [(np.setdiff1d(np.arange(len(cases)), val), val) for val in stratified_folds(cases, k, seed)]


def group_counts(examples: list[Example]) -> tuple[int, int]:
    """(positive, negative) weak group targets: what the class balance of the loss is counted from."""
    t = [target for e in examples for _, target in e.weak.groups]
    return int(sum(t)), int(len(t) - sum(t))


@dataclass
class Member:
    """One ensemble member's network at this site and the site's share of its data."""

    seed: int
    train: list[Example]
    val: list[Example]
    val_cases: list[CachedCase]
    model: StationNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    raw_val_logits: list[np.ndarray] | None = None


F = TypeVar("F", bound=Callable[..., Any])


def on_recipe_threads(method: F) -> F:
    """A Site method run on the recipe's CPU threads (`training.cpu_threads`), as central training runs."""
    @functools.wraps(method)
    def run(self: "Site", *args: Any, **kwargs: Any) -> Any:
        with training_threads(self.tcfg):
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


def _proximal_term(model: torch.nn.Module, mu: float) -> Callable[[torch.nn.Module], torch.Tensor] | None:
    """FedProx's term for this round: mu / 2 x the squared distance of the model's weights from their values now (the
    global weights just loaded), by NVFlare's PTFedProxLoss; None when mu is 0."""
    if mu <= 0.0:
        return None
    import copy

    from nvflare.app_opt.pt.fedproxloss import PTFedProxLoss

    anchor = copy.deepcopy(model).eval()
    for p in anchor.parameters():
        p.requires_grad_(False)
    loss = PTFedProxLoss(mu)
    return lambda local: loss(local, anchor)


class Site:
    """A site's training state across the rounds of a federated run (kept in the site's process)."""

    def __init__(self, cases: list[CachedCase], cfg: dict[str, Any], rank: int, device: str | None = None) -> None:
        check_recipe(cfg)
        if not cases:
            raise InputError("the site has no cached case")
        self.cfg, self.tcfg = cfg, cfg["training"]
        self.settings = PatchSettings.from_dict(cfg["patch"])
        self.rank = int(rank)
        self.device = device_for(device)
        self.pooling = _pooling(self.tcfg)
        self.cases = cases
        seed = int(self.tcfg["seed"])
        examples = prepare(cases, self.tcfg)
        self.members: list[Member] = []
        for f, (tr, va) in enumerate(member_splits(cases, ensemble_folds(cfg), seed, float(self.tcfg["validation_fraction"]))):
            model = new_model(cfg).to(self.device)
            opt = torch.optim.Adam(param_groups(model, self.tcfg), weight_decay=float(self.tcfg.get("weight_decay", 0.0)))
            self.members.append(Member(seed + f, [examples[i] for i in tr], [examples[i] for i in va], [cases[i] for i in va], model, opt,
                                       torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")))

    def census(self) -> dict[str, Any]:
        """Counts the server needs before the first round: per member the training and validation cases and the
        weak group targets of the training part (the loss's class balance is pooled over the sites)."""
        members = []
        for m in self.members:
            pos, neg = group_counts(m.train)
            members.append({"train_cases": len(m.train), "validation_cases": len(m.val), "positive_groups": pos, "negative_groups": neg})
        return {"cases": len(self.cases), "members": members}

    def _load(self, m: Member, state: State) -> None:
        with torch.no_grad():
            m.model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})

    @on_recipe_threads
    def validation_terms(self, states: list[State], pos_weights: list[float]) -> list[dict[str, float]]:
        """Per member: the sum and number of the weak loss terms of the given weights on the site's validation fold."""
        out = []
        for m, state, pw in zip(self.members, states, pos_weights):
            self._load(m, state)
            out.append(self._validation_sum(m, pw))
        return out

    def _validation_sum(self, m: Member, pos_weight: float) -> dict[str, float]:
        if not m.val:
            return {"loss": 0.0, "n": 0}
        logits = predict_logits(m.model, m.val, self.settings, self.device)
        total, n = _case_losses([1.0 * torch.from_numpy(z).double() + 0.0 for z in logits], m.val, False, pos_weight, *self.pooling)
        return {"loss": float(total), "n": int(n)}

    @on_recipe_threads
    def train_round(self, states: list[State], epochs: list[int], pos_weights: list[float],
                    validate_first: bool, proximal_mu: float = 0.0) -> tuple[list[State], list[dict[str, Any]]]:
        """Start every member from the global weights (validating them first when asked), train it the given epochs,
        return its weights and what the round's record needs (loss sums, steps, cases).

        `proximal_mu` > 0: FedProx, each step's loss plus mu / 2 x the squared distance of the weights from the global
        ones of the round (NVFlare's PTFedProxLoss); 0 is FedAvg's local training, the same as central training."""
        new, records = [], []
        for m, state, pw in zip(self.members, states, pos_weights):
            self._load(m, state)
            record: dict[str, Any] = {"train_cases": len(m.train)}
            if validate_first:
                record["validation"] = self._validation_sum(m, pw)
            proximal = _proximal_term(m.model, proximal_mu)
            loss, steps = 0.0, 0
            for epoch in epochs:
                l, s = self._epoch(m, epoch, pw, proximal)
                loss, steps = loss + l, steps + s
            record.update({"train_loss_sum": loss, "steps": steps})
            new.append({k: v.detach().cpu().clone() for k, v in m.model.state_dict().items()})
            records.append(record)
        return new, records

    def _epoch(self, m: Member, epoch: int, pos_weight: float,
               proximal: Callable[[torch.nn.Module], torch.Tensor] | None = None) -> tuple[float, int]:
        """One epoch of nstage.training.train.train for one process (world size 1, this site's rank for the draws);
        `proximal`: a term added to each step's loss (FedProx), left out of the loss sum it returns."""
        batch = int(self.tcfg["batch_cases"])
        aug = dict(self.tcfg.get("augment", {}))
        torch.manual_seed(m.seed * 100003 + epoch * 101 + self.rank)
        order = np.random.default_rng([m.seed, epoch]).permutation(len(m.train))
        rng = np.random.default_rng([m.seed, epoch, self.rank])
        steps = max(1, len(order) // batch)
        m.model.train()
        run_loss = 0.0
        for step in range(steps):
            part = [m.train[i] for i in order[step * batch:(step + 1) * batch]]
            x, slots = _batch(part, self.settings, aug, rng, self.device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
                logits = m.model(*x)
            loss, n = _case_losses(_case_logits(logits, slots), part, False, pos_weight, *self.pooling)
            loss = loss / max(n, 1)
            total = loss if proximal is None else loss + proximal(m.model)
            m.optimizer.zero_grad(set_to_none=True)
            m.scaler.scale(total).backward()
            m.scaler.step(m.optimizer)
            m.scaler.update()
            run_loss += float(loss.detach())
        return run_loss, steps

    @on_recipe_threads
    def calibration_terms(self, best: list[State] | None, points: list[list[tuple[float, float]]]) -> list[list[dict]]:
        """Per member and candidate (a, b): the calibration loss's sums on the validation fold (best weights, raw logits)."""
        out = []
        for m, state, pts in zip(self.members, best or [None] * len(self.members), points):
            if state is not None:
                self._load(m, state)
                m.model.eval()
                m.raw_val_logits = predict_logits(m.model, m.val, self.settings, self.device, raw=True) if m.val else []
            if m.raw_val_logits is None:
                raise InputError("calibration asked before the best weights were sent")
            out.append(site_terms(m.raw_val_logits, m.val, pts, self.pooling) if pts else [])
        return out

    @on_recipe_threads
    def summaries(self, calibrations: list[tuple[float, float]], grid: np.ndarray) -> list[Summary]:
        """Per member: the counts on the grid of its calibrated probabilities on its validation fold (out of fold)."""
        out = []
        for m, (a, b) in zip(self.members, calibrations):
            with torch.no_grad():
                m.model.calibration.copy_(torch.tensor([a, b], dtype=m.model.calibration.dtype))
            probs = predict(m.model, m.val, self.settings, self.device) if m.val else []
            out.append(summarise(probs, m.val, m.val_cases, grid, str(self.tcfg.get("rules", "tnm"))))
        return out
