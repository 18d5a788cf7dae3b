"""Named operating points of a trained station network, chosen out of fold (or on the validation split).

- ``staging``: the threshold whose station calls stage the most patients right (TNM 8): the N stage.
- ``station``: the specificity of the seed paper's station operating point (0.90) on the stations known
  to be benign: weakly, those of the groups the N stage calls negative; supervised, station labels.
- ``triage``: the highest threshold at which a share (0.85) of the N-positive groups have a station at or
  above it (weak: which station of a positive group is malignant is not known, so the sensitivity is read
  per group, as "the group would be flagged"); supervised: that share of the malignant stations. It is
  kept only when it earns its place: below the station point's threshold (else it flags nothing more).

The settings are `training.operating_points` of config/classifier.json; every point records its rule and
what it gives on the cases it was chosen on (nstage.training.thresholds.operating_point).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nstage.training.thresholds import Targets, operating_point, operating_threshold
from nstage.training.weak_labels import group_scores

POINTS = ("staging", "station", "triage")


def positive_scores(probs: list[np.ndarray], examples: list[Targets], supervised: bool) -> np.ndarray:
    """What a sensitivity is read on: the malignant stations' probabilities (supervised) or each N-positive
    group's highest station probability (weak)."""
    if supervised:
        parts = [p[e.truth == 1] for p, e in zip(probs, examples) if e.truth is not None]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.array([score for p, e in zip(probs, examples) for score, target in group_scores(p, e.weak) if target], float)


def sensitivity_threshold(positives: np.ndarray, sensitivity: float) -> float:
    """The highest threshold (calls at >=) that keeps at least `sensitivity` of the positives called."""
    pos = np.sort(np.asarray(positives, float))[::-1]
    if pos.size == 0:
        return 0.5
    k = int(np.ceil(sensitivity * pos.size)) - 1
    return float(pos[min(max(k, 0), pos.size - 1)])


def sensitivity_at(positives: np.ndarray, threshold: float) -> float:
    """Share of the positives at or above `threshold` (NaN without positives)."""
    pos = np.asarray(positives, float)
    return float(np.mean(pos >= threshold)) if pos.size else float("nan")


def choose_operating_points(probs: list[np.ndarray], examples: list[Targets], maxima: np.ndarray, n_levels: np.ndarray,
                            staging_threshold: float, supervised: bool, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every named point: its threshold, rule and figures on these cases (out of fold for an ensemble)."""
    station = settings["station"]
    triage = settings["triage"]
    positives = positive_scores(probs, examples, supervised)
    chosen = {
        "staging": (staging_threshold, "the threshold that stages the most patients right (TNM 8)"),
        "station": (operating_threshold(probs, examples, supervised, float(station["specificity"])),
                    f"specificity {float(station['specificity']):.2f} of the stations known to be benign"),
        "triage": (sensitivity_threshold(positives, float(triage["sensitivity"])),
                   f"sensitivity {float(triage['sensitivity']):.2f} of the "
                   + ("malignant stations" if supervised else "N-positive groups (a station of the group at or above it)")),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (threshold, rule) in chosen.items():
        out[name] = {"threshold": float(threshold), "rule": rule,
                     **operating_point(probs, examples, maxima, n_levels, threshold, supervised),
                     "validation_sensitivity": sensitivity_at(positives, threshold),
                     "sensitivity_of": "malignant stations" if supervised else "N-positive groups"}
    return earned(out)


def earned(points: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The points without `triage` when it does not earn its place: a triage threshold not below the station
    point's flags no station that the station point does not (the station point then says so in `note`)."""
    triage, station = points.get("triage"), points.get("station")
    if triage is None or station is None or triage["threshold"] < station["threshold"]:
        return points
    kept = {k: v for k, v in points.items() if k != "triage"}
    kept["station"] = {**station, "note": (
        f"no triage point: its threshold ({triage['rule']}) would be {triage['threshold']:.3f}, not below this one, "
        f"which already reaches sensitivity {station['validation_sensitivity']:.3f} of the {station['sensitivity_of']}")}
    return kept

