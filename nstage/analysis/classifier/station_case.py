"""What a station classifier is given and what it returns: the data types of the classifier slot.

The pipeline fills a :class:`StationCase` and asks a :class:`StationClassifier` for a
:class:`StationCall` per station; the CNN (inference.py) and the SUVmax rule (slot.py) both
implement the protocol, and neither imports the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nstage.analysis.measure import StationUptake
from nstage.analysis.nodes import StationNodes
from nstage.geometry import Grid


@dataclass(frozen=True)
class StationCall:
    """A station's probability, its call at the staging operating point (what the N stage reads), and whether it
    reaches each of the classifier's named operating points (e.g. staging, station, triage)."""

    probability: float
    malignant: bool
    points: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class StationCase:
    """Everything a station classifier may look at for one study (arrays ``[k, j, i]``, grids LPS)."""

    hu: np.ndarray  # CT in HU on `ct_grid`
    ct_grid: Grid
    suv: np.ndarray  # SUVbw on `pet_grid`
    pet_grid: Grid
    stations: np.ndarray  # uint8 station labels (atlas/stations.json) on `ct_grid`
    uptake: Mapping[str, StationUptake]  # station name -> measurements
    nodes: Mapping[str, StationNodes] = field(default_factory=dict)  # station name -> nodes read in it
    blood_pool: float | None = None  # blood-pool SUVmean (None: not measured)
    tumour_suv: float | None = None  # the primary tumour's SUVmax (None: not found)
    tumour_side: str | None = None  # "R" | "L" (given or found), None when unknown


class StationClassifier(Protocol):
    """The classifier slot: a description for result.json `model` and per-station calls."""

    @property
    def description(self) -> dict[str, object]: ...

    def classify(self, case: StationCase) -> dict[str, StationCall]: ...
