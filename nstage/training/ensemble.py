"""Cross-fitted training: k members, each validated on its own stratified fold, shipped as one ensemble.

With `training.ensemble_folds` = k > 1 the training cohort is dealt into k stratified folds. Member f
trains on the other folds and uses fold f for what a validation split is for (the best epoch, Platt
calibration). Every patient is then out of fold for exactly one member, so the operating threshold
and its validation figures are chosen on the out-of-fold probabilities of the whole cohort, not on
one quarter of it; the shipped model averages the members' calibrated probabilities. Member f
draws from seed + f; the run is as deterministic and resumable as each member (one checkpoint
folder per member).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nstage.analysis.classifier.model import StationEnsemble
from nstage.analysis.classifier.settings import PatchSettings
from nstage.training.cache import CachedCase
from nstage.training.metrics import auroc
from nstage.training.operating_points import choose_operating_points
from nstage.training.splits import split_validation, stratified_folds
from nstage.training.thresholds import operating_point, operating_threshold, staging_inputs
from nstage.training.threads import training_threads
from nstage.training.train import TrainResult, choose_threshold, predict, prepare, train
from nstage.training.weak_labels import group_scores

log = logging.getLogger("nstage.training")
RULE = ("cross-fitted: member f trained on the other stratified folds, best epoch and calibration on fold f; "
        "output = mean of the members' calibrated probabilities; threshold on the out-of-fold probabilities of every case")


@dataclass
class FittedModel:
    """What `nstage train` exports: one network or an ensemble, its threshold and how both were chosen."""

    model: Any  # StationNet or StationEnsemble
    threshold: float
    operating: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)  # per member: seed, cases, best epoch, calibration
    train_cases: int = 0
    validation_cases: int = 0
    points: dict[str, dict[str, Any]] = field(default_factory=dict)  # named operating points (nstage.training.operating_points)


def ensemble_folds(cfg: dict[str, Any]) -> int:
    """The config's member count (1: one network on a `validation_fraction` split)."""
    return max(1, int(cfg["training"].get("ensemble_folds", 1)))


def _member(res: TrainResult, seed: int, n_train: int, n_val: int) -> dict[str, Any]:
    return {"seed": seed, "train_cases": n_train, "validation_cases": n_val, "best_epoch": res.best_epoch,
            "calibration": list(res.calibration), "threshold_on_own_fold": res.threshold, "history": res.history}


def group_auroc(probs: list[np.ndarray], examples: list[Any]) -> float:
    """AUROC of the known groups' pooled scores (max station probability) against their weak targets."""
    pairs = [g for p, e in zip(probs, examples) for g in group_scores(p, e.weak)]
    return auroc(np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])) if pairs else float("nan")


def fit(cases: list[CachedCase], cfg: dict[str, Any], supervised: bool = False, out_dir: Path | None = None,
        resume: bool = False, epochs: int | None = None, split_seed: int | None = None) -> FittedModel:
    """Train the shipped recipe: one network on a validation split, or a cross-fitted ensemble (see the module).
    The split or folds are drawn from `split_seed` (default: the training seed). On the recipe's CPU threads
    (`training.cpu_threads`)."""
    with training_threads(cfg["training"]):
        return _fit(cases, cfg, supervised, out_dir, resume, epochs, split_seed)


def _fit(cases: list[CachedCase], cfg: dict[str, Any], supervised: bool, out_dir: Path | None, resume: bool,
         epochs: int | None, split_seed: int | None) -> FittedModel:
    tcfg = cfg["training"]
    seed, k = int(tcfg["seed"]), ensemble_folds(cfg)
    draw = seed if split_seed is None else int(split_seed)
    if k > 1 and len(cases) < k:
        log.warning("%d case(s) cannot fill %d folds: training one network instead of an ensemble", len(cases), k)
        k = 1
    settings = PatchSettings.from_dict(cfg["patch"])
    if k == 1:
        tr, va = split_validation(cases, np.arange(len(cases)), float(tcfg["validation_fraction"]), draw)
        res = train([cases[i] for i in tr], [cases[i] for i in va], cfg, supervised, out_dir, resume, epochs)
        val = prepare([cases[i] for i in va], tcfg)
        probs = predict(res.model, val, settings)
        operating = {**res.operating, "validation_group_auroc": group_auroc(probs, val)}
        points = choose_operating_points(probs, val, *staging_inputs(probs, [cases[i] for i in va], str(tcfg.get("rules", "tnm"))),
                                         res.threshold, supervised, tcfg["operating_points"])
        return FittedModel(res.model, res.threshold, operating, [_member(res, seed, len(tr), len(va))], len(tr), len(va), points)
    examples = prepare(cases, tcfg)
    oof: list[np.ndarray] = [np.zeros(0)] * len(cases)
    members, records = [], []
    for f, val in enumerate(stratified_folds(cases, k, draw)):
        rest = np.setdiff1d(np.arange(len(cases)), val)
        mcfg = copy.deepcopy(cfg)
        mcfg["training"]["seed"] = seed + f
        log.info("ensemble member %d/%d: %d training, %d validation cases", f + 1, k, rest.size, val.size)
        res = train([cases[i] for i in rest], [cases[i] for i in val], mcfg, supervised,
                    Path(out_dir) / f"member_{f}" if out_dir else None, resume, epochs)
        for i, p in zip(val, predict(res.model, [examples[i] for i in val], settings)):
            oof[int(i)] = p
        members.append(res.model)
        records.append(_member(res, seed + f, rest.size, val.size))
    staging = staging_inputs(oof, cases, str(tcfg.get("rules", "tnm")))
    thr = choose_threshold(tcfg, oof, examples, staging, supervised)
    operating = {"rule": str(tcfg.get("threshold", "validation")), "out_of_fold": True,
                 **operating_point(oof, examples, *staging, thr, supervised),
                 "validation_group_auroc": group_auroc(oof, examples),
                 "specificity_rule_threshold": operating_threshold(oof, examples, supervised, float(tcfg["operating_specificity"]))}
    points = choose_operating_points(oof, examples, *staging, thr, supervised, tcfg["operating_points"])
    log.info("ensemble of %d: threshold %.3f on %d out-of-fold cases (N-stage accuracy %.3f); operating points %s", k, thr,
             len(cases), operating["validation_n_stage_accuracy"], ", ".join(f"{n} {p['threshold']:.3f}" for n, p in points.items()))
    return FittedModel(StationEnsemble(members).eval(), float(thr), operating, records, len(cases), len(cases), points)
