"""The disease of one synthetic patient: primary tumour, involved stations and every node.

Pure sampling (no geometry): what is where and how avid. Parameters live in
`config/synth/disease.json`; the N stage of the truth is computed from the involved stations by
:mod:`nstage.analysis.nrules`, the same module the app uses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from nstage.analysis.nrules import load_rules
from nstage.paths import config_dir
from nstage.stations import station_names


@dataclass(frozen=True)
class NodeSpec:
    """One lymph node before it is placed: station, kind, size (mm) and FDG avidity."""

    station: str
    kind: str  # normal | malignant | reactive | calcified | enlarged_benign
    short_axis_mm: float
    long_axis_mm: float
    suv: float  # uptake of the node tissue itself (before scanner blur)
    calcified: bool = False

    @property
    def malignant(self) -> bool:
        return self.kind == "malignant"


@dataclass(frozen=True)
class TumourSpec:
    side: str
    lobe: str
    diameter_mm: float
    suv: float
    central: bool
    necrotic: bool


@dataclass(frozen=True)
class DiseaseSpec:
    tumour: TumourSpec
    target_n: str  # the N category the involvement pattern was drawn for (rule set tnm)
    malignant_stations: tuple[str, ...]
    granulomatous: bool
    nodes: tuple[NodeSpec, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def disease_config() -> dict[str, Any]:
    return json.loads((config_dir() / "synth" / "disease.json").read_text())


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _pick(rng: np.random.Generator, weights: dict[str, float], n: int, exclude: set[str] = frozenset()) -> list[str]:
    """Up to n distinct keys drawn by weight."""
    w = {k: v for k, v in weights.items() if k not in exclude and v > 0}
    out: list[str] = []
    while w and len(out) < n:
        k = _choice(rng, w)
        out.append(k)
        del w[k]
    return out


def _lognormal(rng: np.random.Generator, spec: dict[str, float]) -> float:
    return float(np.clip(spec["median"] * np.exp(rng.normal(0.0, spec["sigma"])), spec["min"], spec["max"]))


def _sided(station: str, side: str) -> str:
    """Hilar station number ('10') to the named station on a side ('10R')."""
    return f"{station}{side}"


def involved_stations(rng: np.random.Generator, side: str, lobe: str, target: str) -> list[str]:
    """Malignant stations following lymphatic spread: hilar before mediastinal, mostly."""
    cfg = disease_config()
    rules = load_rules("tnm")
    n2_allowed = set(rules.stations(side, "N2"))
    n3_allowed = set(rules.stations(side, "N3"))
    hilar = [_sided(s, side) for s in _pick(rng, cfg["n1_weights"], int(_choice(rng, cfg["n1_count"])))]
    n2w = {k: v for k, v in cfg["n2_weights_by_lobe"][lobe].items() if k in n2_allowed}
    n3w = {k: v for k, v in cfg["n3_weights"].items() if k in n3_allowed}
    if target == "N0":
        return []
    if target == "N1":
        return hilar
    if target == "N2":
        n2 = _pick(rng, n2w, int(_choice(rng, cfg["n2_count"])))
        return n2 + (hilar if rng.random() < cfg["n2_hilar_probability"] else [])
    n3 = _pick(rng, n3w, int(_choice(rng, cfg["n3_count"])))
    n2 = _pick(rng, n2w, int(_choice(rng, cfg["n2_count"]))) if rng.random() < cfg["n3_n2_probability"] else []
    return n3 + n2 + (hilar if rng.random() < cfg["n3_hilar_probability"] else [])


def _node(rng: np.random.Generator, station: str, kind: str, short: float, suv: float, calcified: bool = False) -> NodeSpec:
    lo, hi = disease_config()["node_elongation"]
    return NodeSpec(station, kind, round(short, 2), round(short * rng.uniform(lo, hi), 2), round(suv, 3), calcified)


def sample_disease(rng: np.random.Generator) -> DiseaseSpec:
    """Draw one patient's tumour, involved stations and all nodes."""
    cfg = disease_config()
    side = _choice(rng, cfg["tumour_side"])
    lobe = _choice(rng, cfg["lobes"][side])
    target = _choice(rng, cfg["n_stage"])
    malignant = involved_stations(rng, side, lobe, target)
    diameter = _lognormal(rng, cfg["tumour_diameter_mm"])
    tumour = TumourSpec(
        side=side, lobe=lobe, diameter_mm=round(diameter, 1), suv=round(_lognormal(rng, cfg["tumour_suv"]), 2),
        central=bool(rng.random() < cfg["tumour_central_probability"]),
        necrotic=bool(diameter >= cfg["tumour_necrosis_min_diameter_mm"] and rng.random() < cfg["tumour_necrosis_probability"]),
    )
    granulomatous = bool(rng.random() < cfg["granulomatous_probability"])
    nodes: list[NodeSpec] = []
    for station in station_names():
        n_normal = int(rng.integers(cfg["normal_nodes_per_station"][0], cfg["normal_nodes_per_station"][1] + 1))
        for _ in range(n_normal):
            nodes.append(_node(rng, station, "normal", rng.uniform(*cfg["normal_node_short_axis_mm"]), rng.uniform(*cfg["benign_node_suv"])))
        if station in malignant:
            for _ in range(int(_choice(rng, cfg["malignant_nodes_per_station"]))):
                nodes.append(_node(rng, station, "malignant", _lognormal(rng, cfg["malignant_short_axis_mm"]), _lognormal(rng, cfg["malignant_suv"])))
            continue
        reactive_p = cfg["granulomatous_station_probability"] if granulomatous and station in cfg["granulomatous_stations"] else cfg["reactive_station_probability"]
        calcified = rng.random() < cfg["calcified_station_probability"]
        if rng.random() < reactive_p or (calcified and rng.random() < cfg["calcified_reactive_probability"]):
            nodes.append(_node(rng, station, "reactive", rng.uniform(*cfg["reactive_short_axis_mm"]), rng.uniform(*cfg["reactive_suv"]), calcified))
        elif calcified:
            nodes.append(_node(rng, station, "calcified", rng.uniform(5.0, 12.0), rng.uniform(*cfg["benign_node_suv"]), True))
        if rng.random() < cfg["enlarged_benign_station_probability"]:
            nodes.append(_node(rng, station, "enlarged_benign", rng.uniform(*cfg["enlarged_benign_short_axis_mm"]), rng.uniform(1.0, 2.0)))
    return DiseaseSpec(tumour, target, tuple(malignant), granulomatous, tuple(nodes))
