"""The tissue classes of the phantom, read from `config/synth/tissues.json` (one place)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nstage.paths import config_dir


@dataclass(frozen=True)
class Tissue:
    label: int
    name: str
    hu: float
    hu_contrast: float
    texture_hu: float
    suv_range: tuple[float, float]


@lru_cache(maxsize=1)
def tissues() -> dict[str, Tissue]:
    """All tissue classes by name."""
    data = json.loads((config_dir() / "synth" / "tissues.json").read_text())
    out: dict[str, Tissue] = {}
    for t in data["tissues"]:
        out[t["name"]] = Tissue(t["label"], t["name"], t["hu"], t["hu_contrast"], t["texture_hu"], tuple(t["suv"]))
    labels = [t.label for t in out.values()]
    if len(set(labels)) != len(labels) or max(labels) > 255:
        raise ValueError("tissues.json: labels must be unique and fit in uint8")
    return out


def label(name: str) -> int:
    """The label of a tissue class by name."""
    try:
        return tissues()[name].label
    except KeyError:
        raise KeyError(f"unknown tissue {name!r}; see config/synth/tissues.json") from None


def lookup_table(values: dict[str, float], default: float = 0.0) -> np.ndarray:
    """A 256-entry table mapping tissue labels to per-tissue values given by name."""
    lut = np.full(256, default, dtype=np.float32)
    for name, v in values.items():
        lut[label(name)] = v
    return lut
