"""Training of the station network, weakly (N stage) or fully supervised (station labels, upper bound).

Deterministic: every epoch draws its case order and augmentation from (seed, epoch[, rank]), so a
run resumed from its checkpoint continues exactly as an uninterrupted one. Multi-process training
runs under `torchrun` (gloo on CPU, nccl on GPU) with DistributedDataParallel; the cases of each
step are split between processes. AMP (float16 autocast + grad scaling) on CUDA only.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nstage.analysis.classifier.model import StationNet, build_model
from nstage.analysis.classifier.patches import crop
from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.weak_labels import (
    WeakTargets,
    group_scores,
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
    patches: np.ndarray  # (S, 3, D, D, D) float16, cached size
    station_index: np.ndarray  # (S,) label - 1
    weak: WeakTargets
    truth: np.ndarray | None  # (S,) station labels (supervised / evaluation only)


def prepare(cases: list[CachedCase], training_cfg: dict[str, Any]) -> list[Example]:
    """Examples with weak targets from each case's N stage (and station truth when known)."""
    out = []
    for c in cases:
        w = weak_targets(c.stations, c.case.tumour_side, c.case.n_tnm8, c.case.n_tnm9, training_cfg.get("rules", "tnm"),
                         bool(training_cfg.get("count_constraint", False)))
        out.append(Example(c.case.key, c.patches, c.labels.astype(np.int64) - 1, w, c.truth()))
    return out


@dataclass
class TrainResult:
    model: StationNet
    threshold: float
    supervised: bool
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


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


def _augment(patches: np.ndarray, size: int, aug: dict[str, Any], rng: np.random.Generator | None) -> np.ndarray:
    """Crop (random shift when training, centre otherwise) and jitter CT/SUV intensities."""
    if rng is None:
        return np.ascontiguousarray(crop(patches, size), dtype=np.float32)
    d = patches.shape[-1]
    m = min(int(aug.get("max_shift_voxels", 0)), (d - size) // 2)
    c = (d - size) // 2
    out = np.empty(patches.shape[:2] + (size, size, size), np.float32)
    for s in range(patches.shape[0]):
        off = tuple(int(v) for v in c + rng.integers(-m, m + 1, size=3))
        out[s] = crop(patches[s], size, off)
    scale = 1.0 + rng.uniform(-1, 1, size=(patches.shape[0], 2)) * float(aug.get("intensity_scale", 0.0))
    shift = rng.uniform(-1, 1, size=(patches.shape[0], 2)) * float(aug.get("intensity_shift", 0.0))
    out[:, :2] = out[:, :2] * scale[:, :, None, None, None] + shift[:, :, None, None, None]
    return out


def _batch(examples: list[Example], size: int, aug: dict[str, Any], rng: np.random.Generator | None,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    x = np.concatenate([_augment(e.patches, size, aug, rng) for e in examples])
    st = np.concatenate([e.station_index for e in examples])
    return torch.from_numpy(x).to(device), torch.from_numpy(st).to(device), [len(e.station_index) for e in examples]


def _case_losses(logits: torch.Tensor, examples: list[Example], counts: list[int], supervised: bool,
                 pos_weight: float) -> tuple[torch.Tensor, int]:
    total, n = logits.sum() * 0.0, 0
    for e, part in zip(examples, torch.split(logits.float(), counts)):
        loss, k = supervised_loss(part, e.truth, pos_weight) if supervised else weak_loss(part, e.weak, pos_weight)
        total, n = total + loss, n + k
    return total, n


@torch.no_grad()
def predict(model: nn.Module, examples: list[Example], size: int, device: torch.device | None = None,
            batch_cases: int = 16) -> list[np.ndarray]:
    """Station probabilities of each example (eval mode, centre crop)."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out: list[np.ndarray] = []
    for i in range(0, len(examples), batch_cases):
        part = examples[i:i + batch_cases]
        x, st, counts = _batch(part, size, {}, None, device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            p = torch.sigmoid(model(x, st).float()).cpu().numpy()
        out.extend(np.split(p, np.cumsum(counts)[:-1]))
    model.train(was)
    return out


def youden_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (0.5 without both classes)."""
    scores, targets = np.asarray(scores, float), np.asarray(targets, int)
    if targets.min(initial=1) == targets.max(initial=0):
        return 0.5
    cand = np.unique(scores)
    best, thr = -1.0, 0.5
    for t in cand:
        pred = scores >= t
        j = pred[targets == 1].mean() + (~pred[targets == 0]).mean() - 1.0
        if j > best:
            best, thr = j, float(t)
    return thr


def _validation(model: nn.Module, val: list[Example], size: int, supervised: bool, pos_weight: float,
                device: torch.device) -> tuple[float, float]:
    """Validation loss and decision threshold (weak: from group scores; supervised: station labels)."""
    probs = predict(model, val, size, device)
    eps = 1e-6
    if supervised:
        s, t = np.concatenate(probs), np.concatenate([e.truth for e in val])
    else:
        pairs = [g for p, e in zip(probs, val) for g in group_scores(p, e.weak)]
        s, t = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    if s.size == 0:
        return float("nan"), 0.5
    s = np.clip(s, eps, 1 - eps)
    w = np.where(t == 1, pos_weight, 1.0)
    loss = float(-(w * (t * np.log(s) + (1 - t) * np.log(1 - s))).sum() / len(val))
    return loss, youden_threshold(s, t)


def _set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False


def train(train_cases: list[CachedCase], val_cases: list[CachedCase], cfg: dict[str, Any], supervised: bool = False,
          out_dir: Path | None = None, resume: bool = False, epochs: int | None = None,
          device: str | None = None) -> TrainResult:
    """Train a station network; checkpoints to OUT_DIR/checkpoint.pt every epoch when given."""
    tcfg, size = cfg["training"], int(cfg["patch"]["size_voxels"])
    epochs = int(epochs if epochs is not None else tcfg["epochs"])
    seed = int(tcfg["seed"])
    rank, world = _dist()
    dev = device_for(device)
    train_ex, val_ex = prepare(train_cases, tcfg), prepare(val_cases, tcfg)
    if supervised and any(e.truth is None for e in train_ex + val_ex):
        raise InputError("the fully supervised variant needs station labels (truth.json 'stations') for every case")
    if not train_ex:
        raise InputError("no training cases (build the cache first: nstage train --cohort DIR builds it)")
    _set_determinism(seed)
    model = build_model(cfg["model"], suv_range=tuple(cfg["patch"]["suv_range"])).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]), weight_decay=float(tcfg.get("weight_decay", 0.0)))
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    pos_weight = _pos_weight(train_ex, supervised, bool(tcfg.get("class_balance", True)))
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor], float] | None = None
    start = 0
    ckpt = Path(out_dir) / CHECKPOINT if out_dir else None
    if resume and ckpt and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
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
            x, st, counts = _batch(part, size, aug, rng, dev)
            with torch.autocast("cuda", dtype=torch.float16, enabled=dev.type == "cuda"):
                logits = net(x, st)
            loss, n = _case_losses(logits, part, counts, supervised, pos_weight)
            loss = loss / max(n, 1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            run_loss += float(loss.detach())
        val_loss, thr = _validation(model, val_ex, size, supervised, pos_weight, dev) if val_ex else (float("nan"), 0.5)
        history.append({"epoch": epoch + 1, "train_loss": run_loss / steps, "val_loss": val_loss, "threshold": thr})
        if rank == 0:
            log.info("epoch %d/%d: train loss %.4f, validation loss %.4f", epoch + 1, epochs, run_loss / steps, val_loss)
        if best is None or not np.isfinite(best[0]) or (np.isfinite(val_loss) and val_loss < best[0]):
            best = (val_loss, epoch + 1, copy.deepcopy(model.state_dict()), thr)
        if ckpt and rank == 0:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        "epoch": epoch + 1, "history": history, "best": best, "supervised": supervised,
                        "config": json.loads(json.dumps(cfg))}, tmp)
            tmp.replace(ckpt)
    assert best is not None
    final = build_model(cfg["model"], suv_range=tuple(cfg["patch"]["suv_range"])).to(dev)
    final.load_state_dict(best[2])
    final.eval()
    fixed = tcfg.get("threshold", "validation")
    thr = best[3] if fixed == "validation" else float(fixed)
    return TrainResult(final, float(thr), supervised, history, best[1])
