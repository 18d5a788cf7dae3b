"""The two SUV baselines reported beside the classifier: SUVmax >= threshold, and uptake above the
mediastinal blood pool (the visual criterion of the PET/CT literature). Each gives station calls
and, through the N rules, an N stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nstage.analysis.config import analysis_config
from nstage.analysis.measure import StationUptake
from nstage.analysis.nrules import NStage, stage

MEASURES = {"suv_peak": "SUVpeak", "suv_max": "SUVmax", "suv_mean": "SUVmean"}


@dataclass(frozen=True)
class BaselineResult:
    name: str
    rule: str  # human-readable, with the numbers used
    calls: dict[str, bool]
    n_stage: NStage

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "rule": self.rule, "stations": {s: {"malignant": v} for s, v in self.calls.items()},
                "n_stage": {"tnm8": self.n_stage.tnm8, "tnm9": self.n_stage.tnm9}, "reasons": list(self.n_stage.reasons)}


def suvmax_baseline(uptake: Mapping[str, StationUptake], tumour_side: str | None, rules: str = "tnm") -> BaselineResult:
    """A station is malignant when its SUVmax reaches the configured threshold (2.5 by default)."""
    t = float(analysis_config()["baselines"]["suvmax"]["threshold"])
    calls = {s: u.suv_max >= t for s, u in uptake.items()}
    return BaselineResult("suvmax", f"SUVmax >= {t:g}", calls, stage([s for s, c in calls.items() if c], tumour_side, rules))


def blood_pool_baseline(uptake: Mapping[str, StationUptake], blood_pool_suv: float, tumour_side: str | None, rules: str = "tnm") -> BaselineResult:
    """A station is malignant when its uptake (SUVpeak by default) exceeds the mediastinal blood pool (times a factor)."""
    cfg = analysis_config()["baselines"]["blood_pool"]
    f, measure = float(cfg["factor"]), str(cfg.get("measure", "suv_peak"))
    if measure not in MEASURES:
        raise ValueError(f"config/analysis.json baselines.blood_pool.measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    limit = f * blood_pool_suv
    calls = {s: getattr(u, measure) > limit for s, u in uptake.items()}
    return BaselineResult("blood_pool", f"{MEASURES[measure]} > {f:g} x blood pool ({blood_pool_suv:.2f})", calls,
                          stage([s for s, c in calls.items() if c], tumour_side, rules))
