"""The reader baselines reported beside the classifier: SUVmax >= threshold; uptake above the
mediastinal blood pool (the visual criterion of the PET/CT literature); the CT size rule (node short
axis >= 10 mm); and the combined PET/CT reader rule on the nodes. Each gives station calls and,
through the N rules, an N stage. Thresholds: `config/analysis.json` "baselines"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nstage.analysis.config import analysis_config
from nstage.analysis.measure import StationUptake
from nstage.analysis.nodes import Node, StationNodes
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


def _station_nodes(nodes: Mapping[str, StationNodes], station: str) -> tuple[Node, ...]:
    found = nodes.get(station)
    return found.nodes if found is not None else ()


def ct_size_baseline(uptake: Mapping[str, StationUptake], nodes: Mapping[str, StationNodes], tumour_side: str | None,
                     rules: str = "tnm") -> BaselineResult:
    """A station is malignant when one of its nodes reaches the short-axis threshold (10 mm by default) on CT."""
    t = float(analysis_config()["baselines"]["ct_size"]["short_axis_mm"])
    calls = {s: any(n.short_axis_mm >= t for n in _station_nodes(nodes, s)) for s in uptake}
    return BaselineResult("ct_size", f"node short axis >= {t:g} mm", calls, stage([s for s, c in calls.items() if c], tumour_side, rules))


def combined_positive(node: Node, short_axis_mm: float, avid_grade: int, not_below_grade: int) -> bool:
    """The reader rule for one node: above the blood pool, or large with uptake not below it; calcified nodes benign."""
    if node.calcified or node.visual_grade is None:
        return False
    return node.visual_grade >= avid_grade or (node.short_axis_mm >= short_axis_mm and node.visual_grade >= not_below_grade)


def combined_baseline(uptake: Mapping[str, StationUptake], nodes: Mapping[str, StationNodes], tumour_side: str | None,
                      rules: str = "tnm") -> BaselineResult:
    """The combined PET/CT reader rule used in practice, applied to every node of a station."""
    cfg = analysis_config()["baselines"]["combined"]
    t, avid, not_below = float(cfg["short_axis_mm"]), int(cfg["avid_visual_grade"]), int(cfg["not_below_visual_grade"])
    calls = {s: any(combined_positive(n, t, avid, not_below) for n in _station_nodes(nodes, s)) for s in uptake}
    rule = f"node above blood pool (grade >= {avid}), or short axis >= {t:g} mm and uptake not below it (grade >= {not_below}); calcified benign"
    return BaselineResult("combined", rule, calls, stage([s for s, c in calls.items() if c], tumour_side, rules))
