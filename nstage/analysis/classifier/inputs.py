"""Everything the station network reads for one study, built in ONE place for the cache and inference.

Per station (atlas/stations.json order): a node patch, a context patch (patches.py) and the
measured features (features.py); per patient: the patient features. The network fills 17
station slots from these (label - 1) and leaves absent stations masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nstage.analysis.classifier.features import case_features, patient_features
from nstage.analysis.classifier.patches import extract_patches, station_centres
from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.classifier.station_case import StationCase
from nstage.stations import load_stations


@dataclass(frozen=True)
class StationInputs:
    """The network inputs of one study's stations (S present stations, label order)."""

    labels: np.ndarray  # (S,) int64 station labels
    node: np.ndarray  # (S, 3, n, n, n) float32 node patches (cache size)
    context: np.ndarray  # (S, 3, m, m, m) float32 context patches (cache size)
    features: np.ndarray  # (S, F) float32
    patient: np.ndarray  # (P,) float32


def node_centre(case: StationCase, station: str) -> np.ndarray:
    """Where a station's node patch is centred: its index node, else its hottest point."""
    nodes = case.nodes.get(station)
    if nodes is not None and nodes.index_node is not None:
        return np.asarray(nodes.index_node.centre_lps, float)
    return np.asarray(case.uptake[station].hottest_point_lps, float)


def station_inputs(case: StationCase, settings: PatchSettings, rules: str = "tnm") -> StationInputs:
    """The network inputs of every station of the case's station map that has measurements."""
    label_of = {s.station: s.label for s in load_stations()}
    box_centres = station_centres(case.stations, case.ct_grid)
    names = [s for s in sorted(case.uptake, key=lambda n: label_of[n]) if label_of[s] in box_centres]
    labels = np.array([label_of[s] for s in names], np.int64)
    node_c = {label_of[s]: node_centre(case, s) for s in names}
    ctx_c = {label_of[s]: box_centres[label_of[s]] for s in names}
    args = (case.hu, case.ct_grid, case.suv, case.pet_grid, case.stations)
    return StationInputs(
        labels,
        extract_patches(*args, node_c, settings.node, settings),
        extract_patches(*args, ctx_c, settings.context, settings),
        case_features(names, case.uptake, case.nodes, case.blood_pool, case.tumour_side, rules),
        patient_features(case.tumour_suv, case.blood_pool, case.tumour_side),
    )
