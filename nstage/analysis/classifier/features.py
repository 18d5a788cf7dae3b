"""The measured inputs of the station network: one feature vector per station and one per patient.

Station features come from the pipeline's own measurements (station SUV figures, the index node
read by nstage.analysis.nodes, the blood pool) and from the station's N category for the tumour
side (clinical-rules.md: metastases follow the drainage of the tumour's lung). Every feature is
scaled to about unit range here, in ONE place, for the training cache and for inference alike.
Missing figures (no node read, no blood pool) are 0 with a flag beside them, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nstage.analysis.measure import StationUptake
from nstage.analysis.nodes import Node, StationNodes, node_settings
from nstage.analysis.nrules import station_category

STATION_FEATURES = (
    "station_suv_max", "station_suv_peak", "station_suv_mean", "station_volume",
    "pool_known", "station_max_to_pool", "station_peak_to_pool",
    "node_found", "node_short_axis", "node_long_axis", "node_volume", "node_hu",
    "node_suv_max", "node_suv_peak", "node_max_to_pool", "node_to_tumour",
    "node_calcified", "node_fat", "node_low_density", "node_grade", "node_from_pet", "candidates",
    "nodes_max_short_axis", "nodes_max_suv", "nodes_avid",
    "category_n1", "category_n2", "category_n3",
)
PATIENT_FEATURES = ("tumour_found", "tumour_suv_max", "pool_known", "pool_suv", "side_right")


def _log_suv(v: float) -> float:
    return math.log1p(max(float(v), 0.0))


def _node_features(node: Node | None, pool: float | None, n_candidates: int) -> list[float]:
    if node is None:
        return [0.0] * 14 + [math.log1p(n_candidates)]
    return [1.0, node.short_axis_mm / 10.0, node.long_axis_mm / 10.0, math.log1p(node.volume_ml * 1000.0) / 5.0,
            node.hu_mean / 100.0, _log_suv(node.suv_max), _log_suv(node.suv_peak),
            _log_suv(node.suv_max / pool) if pool else 0.0,
            min(node.tumour_ratio, 2.0) if node.tumour_ratio is not None else 0.0,
            float(node.calcified), float(node.fat_containing), float(node.low_density_centre),
            (node.visual_grade or 0) / 5.0, float(node.source == "pet"), math.log1p(n_candidates)]


def station_features(station: str, uptake: StationUptake, nodes: StationNodes | None, blood_pool: float | None,
                     tumour_side: str | None, rules: str = "tnm") -> np.ndarray:
    """The feature vector of one station (order: STATION_FEATURES)."""
    pool = blood_pool if blood_pool and blood_pool > 0 else None
    u = uptake
    f = [_log_suv(u.suv_max), _log_suv(u.suv_peak), _log_suv(u.suv_mean), math.log1p(u.volume_ml) / 5.0,
         float(pool is not None), _log_suv(u.suv_max / pool) if pool else 0.0, _log_suv(u.suv_peak / pool) if pool else 0.0]
    f += _node_features(nodes.index_node if nodes else None, pool, nodes.candidates if nodes else 0)
    kept = nodes.nodes if nodes else ()  # the index node may be the hottest, not the largest: every node read
    f += [max((n.short_axis_mm for n in kept), default=0.0) / 10.0, _log_suv(max((n.suv_max for n in kept), default=0.0)),
          math.log1p(sum(1 for n in kept if (n.visual_grade or 0) >= node_settings().avid_visual_grade))]
    cat = station_category(station, tumour_side, rules) if tumour_side else ""
    f += [float(cat == "N1"), float(cat == "N2"), float(cat == "N3")]
    assert len(f) == len(STATION_FEATURES)
    return np.asarray(f, np.float32)


def patient_features(tumour_suv: float | None, blood_pool: float | None, tumour_side: str | None) -> np.ndarray:
    """The patient's feature vector (order: PATIENT_FEATURES)."""
    pool = blood_pool if blood_pool and blood_pool > 0 else None
    return np.asarray([float(tumour_suv is not None), _log_suv(tumour_suv or 0.0), float(pool is not None),
                       _log_suv(pool or 0.0), float(tumour_side == "R")], np.float32)


def case_features(stations: list[str], uptake: Mapping[str, StationUptake], nodes: Mapping[str, StationNodes],
                  blood_pool: float | None, tumour_side: str | None, rules: str = "tnm") -> np.ndarray:
    """(S, F) station features of the listed stations."""
    return np.stack([station_features(s, uptake[s], nodes.get(s), blood_pool, tumour_side, rules) for s in stations]) \
        if stations else np.zeros((0, len(STATION_FEATURES)), np.float32)
