"""The station classifier slot of the pipeline.

When the models folder holds the trained PET/CT network (MODELS/station_cnn/model.ts, written by
`nstage train --export`, see nstage/training/), the slot is that CNN (nstage.analysis.classifier.inference).
Otherwise the slot is filled by the SUVmax baseline: the probability is SUVmax mapped through a
logistic curve centred on the baseline threshold. Each is named as such in result.json `model`,
so nobody mistakes the baseline for a trained network. The CNN is loaded once per process
(cached by file path and modification time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nstage import __version__
from nstage.analysis.classifier.station_case import (
    StationCall,
    StationCase,
    StationClassifier,
)
from nstage.analysis.config import analysis_config


@dataclass(frozen=True)
class SuvmaxSlotClassifier:
    """SUVmax -> logistic pseudo-probability; positive at probability >= 0.5 (SUVmax >= threshold)."""

    threshold: float
    width: float

    @property
    def description(self) -> dict[str, object]:
        return {
            "name": "suvmax-baseline",
            "version": __version__,
            "kind": "SUVmax baseline in the classifier slot (no trained model in the models folder)",
            "training_data": "none (rule, not trained)",
            "probability": f"1 / (1 + exp(-(SUVmax - {self.threshold:g}) / {self.width:g})): a monotone score, not a calibrated probability",
        }

    def classify(self, case: StationCase) -> dict[str, StationCall]:
        out = {}
        for station, u in case.uptake.items():
            p = 1.0 / (1.0 + math.exp(-(u.suv_max - self.threshold) / self.width))
            out[station] = StationCall(round(p, 4), p >= 0.5, {"staging": p >= 0.5})
        return out


@lru_cache(maxsize=4)
def _load_cnn(path: str, mtime_ns: int) -> StationClassifier:
    """One loaded network per model file version (path + modification time) and process."""
    from nstage.analysis.classifier.inference import CnnStationClassifier

    return CnnStationClassifier.load(Path(path))


def load_classifier(models_dir: Path) -> StationClassifier:
    """The CNN when the models folder holds it, the SUVmax slot otherwise (e.g. an empty folder)."""
    from nstage.analysis.classifier.layout import find_model

    model = find_model(Path(models_dir))
    if model is not None:
        return _load_cnn(str(model.resolve()), model.stat().st_mtime_ns)
    cfg = analysis_config()["baselines"]["suvmax"]
    return SuvmaxSlotClassifier(float(cfg["threshold"]), float(cfg.get("probability_width", 0.5)))
