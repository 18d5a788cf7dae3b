"""What the analysis of one study produces: the station findings, the decisions, and both together.

The pipeline (nstage/pipeline.py) fills these; the outputs (nstage/outputs/) are written from an
:class:`Analysis` and never import the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nstage.analysis.baselines import BaselineResult
from nstage.analysis.blood_pool import BloodPool
from nstage.analysis.classifier.station_case import StationCall
from nstage.analysis.measure import StationUptake
from nstage.analysis.nodes import StationNodes
from nstage.analysis.nrules import NStage
from nstage.analysis.tumour_side import TumourSide
from nstage.ingest.study import Study
from nstage.stationmap.registration import StationResult


@dataclass(frozen=True)
class StationFindings:
    """Station map and measurements of one study (the input of the classifier and the rules)."""

    registration: StationResult
    labels: np.ndarray  # uint8 station labels on the CT grid
    uptake: dict[str, StationUptake]  # station name -> measurements, in atlas/stations.json order
    blood_pool: BloodPool
    primary: TumourSide | None = None  # the primary tumour as found on the images (whatever side the user gives)
    nodes: Mapping[str, StationNodes] = field(default_factory=dict)  # station name -> nodes read in it


@dataclass(frozen=True)
class Staging:
    """The decisions: tumour side, station calls, N stage and the baselines beside them."""

    side: TumourSide
    calls: dict[str, StationCall]
    n_stage: NStage
    baselines: tuple[BaselineResult, ...]
    rule_set: str
    n_stage_at: Mapping[str, NStage] = field(default_factory=dict)  # the N stage at each of the classifier's operating points


@dataclass(frozen=True)
class Analysis:
    """Everything one study's outputs are written from."""

    study: Study
    findings: StationFindings
    staging: Staging
    result: dict[str, Any]
