"""Training of the station network, weakly (N stage) or fully supervised (station labels, upper bound).

Deterministic: every epoch draws its case order and augmentation from (seed, epoch[, rank]), so a
run resumed from its checkpoint continues exactly as an uninterrupted one. Multi-process training
runs under `torchrun` (gloo on CPU, nccl on GPU) with DistributedDataParallel; the cases of each
step are split between processes. AMP (float16 autocast + grad scaling) on CUDA only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nstage.analysis.classifier.batch import slot_batch
from nstage.analysis.classifier.features import PATIENT_FEATURES, STATION_FEATURES
from nstage.analysis.classifier.inputs import StationInputs
from nstage.analysis.classifier.model import StationNet, build_model
from nstage.analysis.classifier.settings import PatchSettings
from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.platt import A_MIN, newton_fit
from nstage.training.threads import training_threads
from nstage.training.thresholds import (
    operating_point,
    operating_threshold,
    staging_inputs,
    staging_threshold,
)
from nstage.training.weak_labels import (
    WeakTargets,
    supervised_loss,
    weak_loss,
    weak_targets,
)

log = logging.getLogger("nstage.training")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class Example:
    """One case ready for the network."""

    key: str
    inputs: StationInputs
    weak: WeakTargets
    truth: np.ndarray | None  # (S,) station labels (supervised / evaluation only)


def prepare(cases: list[CachedCase], training_cfg: dict[str, Any]) -> list[Example]:
    """Examples with weak targets from each case's N stage (and station truth when known)."""
    out = []
    for c in cases:
        w = weak_targets(c.stations, c.case.tumour_side, c.case.n_tnm8, c.case.n_tnm9, training_cfg.get("rules", "tnm"),
                         bool(training_cfg.get("count_constraint", False)))
        out.append(Example(c.case.key, c.inputs, w, c.truth()))
    return out


def new_model(cfg: dict[str, Any]) -> StationNet:
    """An untrained network of a config."""
    return build_model(cfg["model"], len(STATION_FEATURES), len(PATIENT_FEATURES))


@dataclass
class TrainResult:
    model: StationNet
    threshold: float
    supervised: bool
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    calibration: tuple[float, float] = (1.0, 0.0)
    operating: dict[str, Any] = field(default_factory=dict)  # the threshold's rule and what it gives on validation


def device_for(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return torch.distributed.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def _pos_weight(examples: list[Example], supervised: bool, balance: bool) -> float:
    """negatives / positives among the loss terms (class balancing); 1 when off."""
    if not balance:
        return 1.0
    if supervised:
        y = np.concatenate([e.truth for e in examples])
        pos, neg = y.sum(), y.size - y.sum()
    else:
        t = [target for e in examples for _, target in e.weak.groups]
        pos, neg = sum(t), len(t) - sum(t)
    return float(neg) / float(pos) if pos else 1.0


def _batch(examples: list[Example], settings: PatchSettings, aug: dict[str, Any], rng: np.random.Generator | None,
           device: torch.device) -> tuple[tuple[torch.Tensor, ...], list[np.ndarray]]:
    """The slot tensors of some examples and each example's slot indices (label - 1)."""
    b = slot_batch([e.inputs for e in examples], settings, aug, rng)
    return tuple(torch.from_numpy(a).to(device) for a in b.as_tuple()), [e.inputs.labels - 1 for e in examples]


def _case_logits(logits: torch.Tensor, slots: list[np.ndarray]) -> list[torch.Tensor]:
    """(B, 17) slot logits -> each case's present stations, in label order."""
    return [logits[i, torch.as_tensor(s, device=logits.device)] for i, s in enumerate(slots)]


def _case_losses(logits: list[torch.Tensor], examples: list[Example], supervised: bool, pos_weight: float,
                 pooling: str = "max", lse_r: float = 4.0) -> tuple[torch.Tensor, int]:
    total, n = logits[0].sum() * 0.0, 0
    for e, part in zip(examples, logits):
        part = part.float()
        loss, k = supervised_loss(part, e.truth, pos_weight) if supervised else weak_loss(part, e.weak, pos_weight, pooling, lse_r)
        total, n = total + loss, n + k
    return total, n


@torch.no_grad()
def predict_logits(model: nn.Module, examples: list[Example], settings: PatchSettings, device: torch.device | None = None,
                   batch_cases: int = 16, raw: bool = False) -> list[np.ndarray]:
    """Station logits of each example (eval mode, centre crops); `raw`: before calibration."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out: list[np.ndarray] = []
    for i in range(0, len(examples), batch_cases):
        part = examples[i:i + batch_cases]
        x, slots = _batch(part, settings, {}, None, device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            z = model.raw_logits(*x) if raw else model(*x)
        out.extend(p.float().cpu().numpy() for p in _case_logits(z, slots))
    model.train(was)
    return out


def predict(model: nn.Module, examples: list[Example], settings: PatchSettings, device: torch.device | None = None,
            batch_cases: int = 16) -> list[np.ndarray]:
    """Station probabilities (calibrated) of each example."""
    return [1.0 / (1.0 + np.exp(-z)) for z in predict_logits(model, examples, settings, device, batch_cases)]


def _pooling(tcfg: dict[str, Any]) -> tuple[str, float]:
    return str(tcfg.get("pooling", "max")), float(tcfg.get("lse_r", 4.0))


def _loss_of(logits: list[np.ndarray], val: list[Example], supervised: bool, pos_weight: float, tcfg: dict[str, Any],
             a: torch.Tensor | float = 1.0, b: torch.Tensor | float = 0.0) -> torch.Tensor:
    """The training loss of fixed station logits, scaled a * z + b (for validation and calibration)."""
    parts = [a * torch.from_numpy(z).double() + b for z in logits]
    total, n = _case_losses(parts, val, supervised, pos_weight, *_pooling(tcfg))
    return total / max(n, 1)


def calibrate(logits: list[np.ndarray], val: list[Example], supervised: bool, pos_weight: float,
              tcfg: dict[str, Any]) -> tuple[float, float]:
    """(a, b) so that sigmoid(a * z + b) fits the validation targets: station labels (supervised) or the
    weak group labels through the same pooling as training (Platt scaling, no class weights)."""
    if not val:
        return 1.0, 0.0
    a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss_of(logits, val, supervised, 1.0, tcfg, a.clamp_min(A_MIN), b)
        loss.backward()
        return loss

    opt.step(closure)
    if float(a.detach()) > A_MIN:
        return float(a.detach()), float(b.detach())
    # L-BFGS stops where its line search first crossed the bound (the clamp leaves it no gradient in a there), often
    # far from the optimum: fit again by bounded Newton steps, as the federated calibration does (nstage.training.platt)
    def loss_at(ab: torch.Tensor) -> torch.Tensor:
        return _loss_of(logits, val, supervised, 1.0, tcfg, ab[0].clamp_min(A_MIN), ab[1])

    def terms(points: list[tuple[float, float]]) -> list[tuple[float, np.ndarray, np.ndarray]]:
        out = []
        for point in points:
            x = torch.tensor(point, dtype=torch.float64)
            loss, grad = torch.autograd.functional.vjp(loss_at, x, torch.tensor(1.0, dtype=torch.float64))
            out.append((float(loss), grad.numpy().copy(), torch.autograd.functional.hessian(loss_at, x).numpy().copy()))
        return out

    return newton_fit(terms)


THRESHOLD_RULES = ("staging", "validation")


def choose_threshold(tcfg: dict[str, Any], probs: list[np.ndarray], val_ex: list[Example], staging: tuple[np.ndarray, np.ndarray],
                     supervised: bool) -> float:
    """The operating threshold the config asks for: "staging" (the most validation patients staged right,
    TNM 8), "validation" (operating_specificity of the validation stations known to be benign) or a number."""
    rule = tcfg.get("threshold", "validation")
    if rule == "staging":
        return staging_threshold(*staging)
    if rule == "validation":
        return operating_threshold(probs, val_ex, supervised, float(tcfg["operating_specificity"]))
    if isinstance(rule, str):
        raise InputError(f"training.threshold must be a number or one of {', '.join(THRESHOLD_RULES)} (got {rule!r})")
    return float(rule)


READER_PARAMETERS = ("uptake.", "linear.", "station_bias.")


def param_groups(model: nn.Module, tcfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Adam parameter groups: the reader terms (uptake prior, linear reader, station bias) at `reader_lr_factor`
    x the learning rate, since Adam moves a weight by at most about lr per step and a reader weight must travel
    by whole units (the prior's slope is 2 per SUV); the networks at the learning rate."""
    lr = float(tcfg["lr"])
    named = list(model.named_parameters())
    reader = [p for n, p in named if n.startswith(READER_PARAMETERS)]
    rest = [p for n, p in named if not n.startswith(READER_PARAMETERS)]
    return [{"params": rest, "lr": lr}, {"params": reader, "lr": lr * float(tcfg.get("reader_lr_factor", 1.0))}]


def weight_average(model: nn.Module, tcfg: dict[str, Any]) -> AveragedModel | None:
    """An exponential moving average of the weights (`training.ema_decay` per optimiser step), or None when
    the setting is absent or 0: validation, the best epoch, calibration and the threshold then read the
    averaged weights rather than the last step's."""
    decay = float(tcfg.get("ema_decay", 0.0))
    if not 0.0 <= decay < 1.0:
        raise InputError(f"training.ema_decay must be in [0, 1) (got {decay})")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay)) if decay > 0 else None


def _set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False


def run_fingerprint(train_ex: list[Example], val_ex: list[Example], cfg: dict[str, Any], supervised: bool) -> str:
    """A digest of what a training run reads (its examples' inputs and targets, the settings): a checkpoint
    resumes only the run that wrote it, not one on a re-rendered cohort of the same case names."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"cfg": cfg, "supervised": supervised}, sort_keys=True, default=str).encode())
    for split in (train_ex, val_ex):
        h.update(b"|split|")
        for e in split:
            h.update(e.key.encode())
            for a in (e.inputs.labels, e.inputs.node, e.inputs.context, e.inputs.features, e.inputs.patient):
                h.update(np.ascontiguousarray(a).tobytes())
            h.update(repr(e.weak).encode())
            if e.truth is not None:
                h.update(np.ascontiguousarray(e.truth).tobytes())
    return h.hexdigest()


def train(train_cases: list[CachedCase], val_cases: list[CachedCase], cfg: dict[str, Any], supervised: bool = False,
          out_dir: Path | None = None, resume: bool = False, epochs: int | None = None,
          device: str | None = None) -> TrainResult:
    """Train a station network; checkpoints to OUT_DIR/checkpoint.pt every epoch when given. The best
    epoch (validation loss; of the averaged weights when `training.ema_decay` is set) is kept, calibrated on the
    validation split and given its operating threshold. On the recipe's CPU threads (`training.cpu_threads`)."""
    with training_threads(cfg["training"]):
        return _train(train_cases, val_cases, cfg, supervised, out_dir, resume, epochs, device)


def _train(train_cases: list[CachedCase], val_cases: list[CachedCase], cfg: dict[str, Any], supervised: bool,
           out_dir: Path | None, resume: bool, epochs: int | None, device: str | None) -> TrainResult:
    tcfg = cfg["training"]
    settings = PatchSettings.from_dict(cfg["patch"])
    epochs = int(epochs if epochs is not None else tcfg["epochs"])
    seed = int(tcfg["seed"])
    rank, world = _dist()
    dev = device_for(device)
    train_ex, val_ex = prepare(train_cases, tcfg), prepare(val_cases, tcfg)
    rule = tcfg.get("threshold", "validation")
    if isinstance(rule, str) and rule not in THRESHOLD_RULES:  # refused before training, not after it
        raise InputError(f"training.threshold must be a number or one of {', '.join(THRESHOLD_RULES)} (got {rule!r})")
    if supervised and any(e.truth is None for e in train_ex + val_ex):
        raise InputError("the fully supervised variant needs station labels (truth.json 'stations') for every case")
    if not train_ex:
        raise InputError("no training cases (build the cache first: nstage train --cohort DIR builds it)")
    _set_determinism(seed)
    model = new_model(cfg).to(dev)
    opt = torch.optim.Adam(param_groups(model, tcfg), weight_decay=float(tcfg.get("weight_decay", 0.0)))
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    ema = weight_average(model, tcfg)
    pos_weight = _pos_weight(train_ex, supervised, bool(tcfg.get("class_balance", True)))
    pooling = _pooling(tcfg)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    start = 0
    ckpt = Path(out_dir) / CHECKPOINT if out_dir else None
    run_id = run_fingerprint(train_ex, val_ex, cfg, supervised)
    state = torch.load(ckpt, map_location=dev, weights_only=False) if resume and ckpt and ckpt.is_file() else None
    if state is not None and state.get("run") != run_id:
        log.warning("checkpoint %s was written for other training data or settings: training afresh", ckpt)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, history, best = int(state["epoch"]), state["history"], state["best"]
        log.info("resumed from %s after epoch %d", ckpt, start)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    batch = int(tcfg["batch_cases"])
    aug = dict(tcfg.get("augment", {}))
    for epoch in range(start, epochs):
        torch.manual_seed(seed * 100003 + epoch * 101 + rank)  # dropout of this epoch and process
        order = np.random.default_rng([seed, epoch]).permutation(len(train_ex))
        rng = np.random.default_rng([seed, epoch, rank])
        steps = max(1, len(order) // (batch * world)) if len(order) >= world else 1
        net.train()
        run_loss = 0.0
        for step in range(steps):
            ids = order[step * batch * world:(step + 1) * batch * world][rank::world]
            part = [train_ex[i] for i in ids]
            x, slots = _batch(part, settings, aug, rng, dev)
            with torch.autocast("cuda", dtype=torch.float16, enabled=dev.type == "cuda"):
                logits = net(*x)
            loss, n = _case_losses(_case_logits(logits, slots), part, supervised, pos_weight, *pooling)
            loss = loss / max(n, 1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            run_loss += float(loss.detach())
        judged: nn.Module = ema.module if ema is not None else model
        val_loss = float(_loss_of(predict_logits(judged, val_ex, settings, dev), val_ex, supervised, pos_weight, tcfg)) \
            if val_ex else float("nan")
        history.append({"epoch": epoch + 1, "train_loss": run_loss / steps, "val_loss": val_loss})
        if rank == 0:
            log.info("epoch %d/%d: train loss %.4f, validation loss %.4f", epoch + 1, epochs, run_loss / steps, val_loss)
        if best is None or not np.isfinite(best[0]) or (np.isfinite(val_loss) and val_loss < best[0]):
            best = (val_loss, epoch + 1, copy.deepcopy(judged.state_dict()))
        if ckpt and rank == 0:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        "epoch": epoch + 1, "history": history, "best": best, "supervised": supervised, "run": run_id,
                        "config": json.loads(json.dumps(cfg)), "ema": ema.state_dict() if ema is not None else None}, tmp)
            tmp.replace(ckpt)
    assert best is not None
    final = new_model(cfg).to(dev)
    final.load_state_dict(best[2])
    final.eval()
    calib = (1.0, 0.0)
    if tcfg.get("calibrate", True) and val_ex:
        calib = calibrate(predict_logits(final, val_ex, settings, dev, raw=True), val_ex, supervised, pos_weight, tcfg)
    with torch.no_grad():
        final.calibration.copy_(torch.tensor(calib, dtype=final.calibration.dtype))
    probs = predict(final, val_ex, settings, dev) if val_ex else []
    staging = staging_inputs(probs, val_cases, str(tcfg.get("rules", "tnm")))  # (category maxima, N levels)
    thr = choose_threshold(tcfg, probs, val_ex, staging, supervised)
    operating = {"rule": str(tcfg.get("threshold", "validation")), **operating_point(probs, val_ex, *staging, thr, supervised)}
    return TrainResult(final, float(thr), supervised, history, best[1], calib, operating)
