"""The network's batch layout: studies' station inputs scattered into 17 station slots (label - 1).

The same function feeds training (random crop shifts and intensity jitter) and inference (centre
crops, no jitter), so what the network sees at inference is what it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nstage.analysis.classifier.inputs import StationInputs
from nstage.analysis.classifier.patches import crop
from nstage.analysis.classifier.settings import PatchSettings

N_SLOTS = 17


@dataclass(frozen=True)
class SlotBatch:
    """Network inputs of B studies (numpy, float32)."""

    node: np.ndarray  # (B, 17, 3, n, n, n)
    context: np.ndarray  # (B, 17, 3, m, m, m)
    features: np.ndarray  # (B, 17, F)
    patient: np.ndarray  # (B, P)
    present: np.ndarray  # (B, 17)

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return self.node, self.context, self.features, self.patient, self.present


def _crops(patches: np.ndarray, size: int, max_shift: int, rng: np.random.Generator | None) -> np.ndarray:
    if rng is None or max_shift <= 0:
        return crop(patches, size)
    d = patches.shape[-1]
    m, c = min(max_shift, (d - size) // 2), (d - size) // 2
    out = np.empty(patches.shape[:2] + (size,) * 3, patches.dtype)
    for s in range(patches.shape[0]):
        out[s] = crop(patches[s], size, tuple(int(v) for v in c + rng.integers(-m, m + 1, size=3)))
    return out


def _jitter(x: np.ndarray, aug: dict[str, Any], rng: np.random.Generator) -> None:
    """Scale and shift the CT and SUV channels of (S, 3, ...) patches in place, per station."""
    n = x.shape[0]
    scale = 1.0 + rng.uniform(-1, 1, size=(n, 2)) * float(aug.get("intensity_scale", 0.0))
    shift = rng.uniform(-1, 1, size=(n, 2)) * float(aug.get("intensity_shift", 0.0))
    x[:, :2] = x[:, :2] * scale[:, :, None, None, None] + shift[:, :, None, None, None]


def slot_batch(items: list[StationInputs], settings: PatchSettings, aug: dict[str, Any] | None = None,
               rng: np.random.Generator | None = None) -> SlotBatch:
    """The slot layout of several studies; augmented when `rng` is given."""
    b, n, m = len(items), settings.node.size, settings.context.size
    f, p = items[0].features.shape[1], items[0].patient.shape[0]
    out = SlotBatch(np.zeros((b, N_SLOTS, 3, n, n, n), np.float32), np.zeros((b, N_SLOTS, 3, m, m, m), np.float32),
                    np.zeros((b, N_SLOTS, f), np.float32), np.zeros((b, p), np.float32), np.zeros((b, N_SLOTS), np.float32))
    shift = int((aug or {}).get("max_shift_voxels", 0))
    for i, it in enumerate(items):
        slots = it.labels - 1
        node = _crops(it.node, n, shift, rng).astype(np.float32)
        ctx = _crops(it.context, m, max(1, shift // 2) if shift else 0, rng).astype(np.float32)
        if rng is not None and aug:
            _jitter(node, aug, rng)
            _jitter(ctx, aug, rng)
        out.node[i, slots], out.context[i, slots] = node, ctx
        out.features[i, slots], out.present[i, slots] = it.features, 1.0
        out.patient[i] = it.patient
    return out
