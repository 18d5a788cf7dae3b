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
    """One lymph node before it is placed: station, kind, size (mm), CT density and signs, FDG avidity."""

    station: str
    kind: str  # normal | malignant | reactive | calcified | enlarged_benign
    short_axis_mm: float
    long_axis_mm: float
    suv: float  # uptake of the node tissue itself (before scanner blur)
    calcified: bool = False
    necrotic: bool = False
    fatty_hilum: bool = False
    tissue_hu: float = 35.0  # solid node tissue, unenhanced
    enhancement_hu: float = 40.0  # added to tissue_hu on contrast-enhanced CT
    sign_fraction: float = 0.0  # share of the node's semi-axes taken by its hilum, necrotic core or calcification
    necrosis_hu_drop: float = 0.0
    core_uptake_fraction: float = 1.0  # necrotic core uptake relative to the rim

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


@lru_cache(maxsize=1)
def node_config() -> dict[str, Any]:
    return json.loads((config_dir() / "synth" / "nodes.json").read_text())


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


def _tumour_suv(rng: np.random.Generator, spec: dict[str, Any], n_stage: str) -> float:
    """The primary's SUVmax: lognormal, its median higher in node-positive patients (config "n_stage_factor")."""
    scaled = dict(spec, median=spec["median"] * spec.get("n_stage_factor", {}).get(n_stage, 1.0))
    return _lognormal(rng, scaled)


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


def _interp_table(table: list[list[float]], x: float) -> float:
    xs, ys = zip(*table)
    return float(np.interp(x, xs, ys))


def _short_axis(rng: np.random.Generator, kind: str, station: str) -> float:
    c = node_config()["short_axis_mm"]
    if kind == "normal":
        n = c["normal"]
        spec = {"median": n["mean_by_station"][station] * np.exp(-n["sigma"] ** 2 / 2), "sigma": n["sigma"], "min": n["min"], "max": n["max"]}
        return _lognormal(rng, spec)
    return _lognormal(rng, c[kind])


def _uptake(rng: np.random.Generator, kind: str, short: float, tumour_suv: float) -> float:
    u = node_config()["uptake"]
    if kind == "malignant":
        m = u["malignant"]
        if rng.random() < _interp_table(m["low_volume_probability_by_short_axis"], short):
            return float(rng.uniform(*m["low_volume_suv"]))
        median = m["median_at_10mm"] * (short / 10.0) ** m["size_exponent"] * (tumour_suv / m["tumour_reference_suv"]) ** m["tumour_exponent"]
        return _lognormal(rng, {"median": median, "sigma": m["sigma"], "min": m["min"], "max": m["max"]})
    key = "normal" if kind == "calcified" else kind
    return float(rng.uniform(*u[key]))


def make_node(rng: np.random.Generator, station: str, kind: str, tumour_suv: float, calcified: bool = False) -> NodeSpec:
    """One node of `kind` with its size, shape, density, signs and uptake drawn from config/synth/nodes.json."""
    c = node_config()
    short = _short_axis(rng, kind, station)
    ratio_cfg = c["axis_ratio"]["malignant" if kind == "malignant" else "benign"]
    ratio = float(np.clip(rng.normal(ratio_cfg["mean"], ratio_cfg["sd"]), c["axis_ratio"]["min"], c["axis_ratio"]["max"]))
    hu_kind = "malignant" if kind == "malignant" else "benign"
    tissue_hu = float(rng.normal(**_normal(c["hu"]["unenhanced"][hu_kind])))
    enhancement = float(max(rng.normal(**_normal(c["hu"]["enhancement"][hu_kind])), 0.0))
    suv = _uptake(rng, kind, short, tumour_suv)
    necrotic = kind == "malignant" and rng.random() < _interp_table(c["necrosis"]["probability_by_short_axis"], short)
    hilum_p = c["fatty_hilum"]["probability"][kind] if short >= c["fatty_hilum"]["min_short_axis_mm"] else 0.0
    # a calcified node shows its calcium, not a fat hilum (the draw is kept so the stream of later draws stays the same)
    fatty = not necrotic and rng.random() < hilum_p and not calcified
    fraction, drop, core_uptake = 0.0, 0.0, 1.0
    if necrotic:
        fraction = float(rng.uniform(*c["necrosis"]["core_fraction"]))
        drop = float(rng.uniform(*c["necrosis"]["hu_drop"]))
        core_uptake = float(rng.uniform(*c["necrosis"]["core_uptake_fraction"]))
    elif calcified:
        fraction = float(rng.uniform(*c["calcification"]["core_fraction"]))
    elif fatty:
        fraction = float(rng.uniform(*c["fatty_hilum"]["volume_fraction"])) ** (1.0 / 3.0)
    return NodeSpec(station, kind, round(short, 2), round(short / ratio, 2), round(suv, 3), calcified, bool(necrotic), bool(fatty),
                    round(tissue_hu, 1), round(enhancement, 1), round(fraction, 3), round(drop, 1), round(core_uptake, 3))


def _normal(spec: dict[str, float]) -> dict[str, float]:
    return {"loc": spec["mean"], "scale": spec["sd"]}


def granulomatous_stations(rng: np.random.Generator) -> list[str]:
    """Stations of granulomatous disease: bilateral and roughly symmetric in most patients, else one side."""
    cfg = disease_config()["granulomatous"]
    if rng.random() < cfg["bilateral_probability"]:
        pairs = [p for p in cfg["symmetric_pairs"] if rng.random() < cfg["pair_probability"]] or [cfg["symmetric_pairs"][0]]
        out = [s for p in pairs for s in p]
        out += [s for s in cfg["midline"] if rng.random() < cfg["midline_probability"]]
        return out
    side = "R" if rng.random() < 0.5 else "L"
    one = [s for s in cfg["one_side"][side] if rng.random() < cfg["pair_probability"]] or [cfg["one_side"][side][0]]
    return one + [s for s in cfg["midline"] if rng.random() < cfg["midline_probability"]]


def station_nodes(rng: np.random.Generator, station: str, malignant: bool, granulomatous: list[str], tumour_suv: float) -> list[NodeSpec]:
    """All nodes of one station. The count is drawn first and does not depend on the disease: metastases,
    reactive, enlarged benign and calcified nodes each take the place of one of the station's normal
    nodes, as a metastasis grows in an existing node, so the count carries no planted sign."""
    d, c = disease_config(), node_config()
    lo, hi = c["count_per_station"]["nodes"]
    slots = int(rng.integers(lo, hi + 1))
    cal = c["calcification"]
    kinds: list[tuple[str, bool]] = []
    if malignant:
        kinds += [("malignant", False)] * int(_choice(rng, c["count_per_station"]["malignant"]))
    else:
        in_granuloma = station in granulomatous
        if in_granuloma or rng.random() < d["reactive_station_probability"]:
            calcified = rng.random() < (cal["granulomatous_avid_probability"] if in_granuloma else cal["station_probability"])
            kinds.append(("reactive", bool(calcified)))
        if rng.random() < d["enlarged_benign_station_probability"]:
            kinds.append(("enlarged_benign", False))
    if rng.random() < cal["station_probability"]:  # an old calcified granuloma or anthracotic node: in involved stations too
        kinds.append(("calcified", True))
    kinds = kinds[:slots]
    kinds += [("normal", False)] * (slots - len(kinds))
    return [make_node(rng, station, kind, tumour_suv, calcified=calcified) for kind, calcified in kinds]


def sample_disease(rng: np.random.Generator) -> DiseaseSpec:
    """Draw one patient's tumour, involved stations and all nodes."""
    cfg = disease_config()
    side = _choice(rng, cfg["tumour_side"])
    lobe = _choice(rng, cfg["lobes"][side])
    target = _choice(rng, cfg["n_stage"])
    malignant = involved_stations(rng, side, lobe, target)
    diameter = _lognormal(rng, cfg["tumour_diameter_mm"])
    tumour = TumourSpec(
        side=side, lobe=lobe, diameter_mm=round(diameter, 1), suv=round(_tumour_suv(rng, cfg["tumour_suv"], target), 2),
        central=bool(rng.random() < cfg["tumour_central_probability"]),
        necrotic=bool(diameter >= cfg["tumour_necrosis_min_diameter_mm"] and rng.random() < cfg["tumour_necrosis_probability"]),
    )
    granulomatous = bool(rng.random() < cfg["granulomatous"]["probability"])
    granuloma = granulomatous_stations(rng) if granulomatous else []
    nodes = [n for station in station_names() for n in station_nodes(rng, station, station in malignant, granuloma, tumour.suv)]
    return DiseaseSpec(tumour, target, tuple(malignant), granulomatous, tuple(nodes))
