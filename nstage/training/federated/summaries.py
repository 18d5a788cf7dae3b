"""What a site tells the server about its out-of-fold (or validation) probabilities, and what the server chooses from it.

A site never sends a probability of a patient. It sends counts on a fixed grid of thresholds t_0 < ... < t_{G-1}:

- ``staged_right[j]``: its patients whose N stage (TNM 8, highest called category wins) is right when the
  stations at or above t_j are called;
- ``benign[i]``, ``positive_groups[i]``, ``negative_groups[i]``, ``maxima[i]``: histograms over the G + 1 bins
  (-inf, t_0), [t_0, t_1), ..., [t_{G-1}, inf) of the stations its N stages say are benign, of the highest
  station probability of each N-positive group and of each N-negative group, and of its patients' highest
  N1, N2 and N3 station probabilities (where the staging curve can step: the central rule's interval edges);
- ``cases``: how many patients.

Summed over the sites these give every count the central rules read (nstage.training.thresholds and
nstage.training.operating_points) at every grid point: the same rules then choose among the grid's thresholds.
A threshold is thus a grid point; the central one lies within one grid step of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nstage.training.operating_points import positive_scores
from nstage.training.thresholds import StagedCase, Targets, staged_at, staging_inputs
from nstage.training.weak_labels import group_scores, known_negatives


COUNTS = ("staged_right", "benign", "positive_groups", "negative_groups", "maxima")


@dataclass
class Summary:
    """Counts on the grid (summable over sites and members)."""

    cases: int
    staged_right: np.ndarray  # (G,)
    benign: np.ndarray  # (G + 1,)
    positive_groups: np.ndarray  # (G + 1,)
    negative_groups: np.ndarray  # (G + 1,)
    maxima: np.ndarray  # (G + 1,)

    def __add__(self, other: "Summary") -> "Summary":
        return Summary(self.cases + other.cases, *(getattr(self, k) + getattr(other, k) for k in COUNTS))

    def as_dict(self) -> dict[str, Any]:
        """The counts as a message carries them (Python ints)."""
        return {"cases": int(self.cases), **{k: [int(x) for x in getattr(self, k)] for k in COUNTS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Summary":
        return cls(int(d["cases"]), *(np.asarray(d[k], np.int64) for k in COUNTS))


def binned(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(G + 1,) counts of values in (-inf, t_0), [t_0, t_1), ..., [t_{G-1}, inf)."""
    idx = np.searchsorted(grid, np.asarray(values, float), side="right")
    return np.bincount(idx, minlength=grid.size + 1).astype(np.int64)


def summarise(probs: list[np.ndarray], examples: list[Targets], cases: list[StagedCase], grid: np.ndarray, rules: str = "tnm") -> Summary:
    """A site's counts on the grid from its patients' (out-of-fold) station probabilities; computed on the site."""
    maxima, levels = staging_inputs(probs, cases, rules)
    right = np.array([int(np.sum(staged_at(maxima, t) == levels)) for t in grid], np.int64) if len(cases) else np.zeros(grid.size, np.int64)
    neg = [known_negatives(p, e.weak) for p, e in zip(probs, examples)]
    benign = np.concatenate(neg) if neg else np.zeros(0)
    negative_groups = np.array([s for p, e in zip(probs, examples) for s, t in group_scores(p, e.weak) if not t], float)
    return Summary(len(cases), right, binned(benign, grid), binned(positive_scores(probs, examples, False), grid),
                   binned(negative_groups, grid), binned(maxima[maxima > 0], grid))


def below(hist: np.ndarray, j: int) -> int:
    """How many binned values lie below grid point j."""
    return int(hist[: j + 1].sum())


def at_or_above(hist: np.ndarray, j: int) -> int:
    return int(hist[j + 1:].sum())


def staging_index(staged_right: np.ndarray, maxima: np.ndarray) -> int:
    """The grid point that stages the most patients right, as nstage.training.thresholds.staging_threshold chooses
    among the intervals between the patients' category maxima: the grid points between two occupied bins of
    `maxima` form one interval; among equally good intervals the widest (most grid points: the grid is even in
    logit) is taken, at its middle point. The two open ends (everything or nothing called) count as zero wide, so
    they are taken only when strictly better, at their point next to the inner side."""
    right = np.asarray(staged_right)
    segment = np.cumsum(np.asarray(maxima)[:-1] > 0)  # grid point j: how many occupied bins lie below it
    last = int(segment[-1]) if segment.size else 0
    best = right.max()
    spans: dict[int, list[int]] = {}
    for j in np.flatnonzero(right >= best):
        spans.setdefault(int(segment[j]), []).append(int(j))

    def width(seg: int) -> int:
        return 0 if seg in (0, last) else len(spans[seg])

    seg = max(sorted(spans), key=width)
    points = spans[seg]
    if width(seg) == 0:
        return points[-1] if seg == 0 else points[0]
    return points[(len(points) - 1) // 2]


def specificity_index(benign: np.ndarray, specificity: float) -> int | None:
    """The lowest grid point leaving at least `specificity` of the benign stations below it (None: none benign)."""
    n = int(benign.sum())
    if n == 0:
        return None
    need = int(np.ceil(specificity * n))
    below_each = np.cumsum(benign)[:-1]  # below grid point j
    hits = np.flatnonzero(below_each >= need)
    return int(hits[0]) if hits.size else int(benign.size - 2)


def sensitivity_index(positives: np.ndarray, sensitivity: float) -> int | None:
    """The highest grid point keeping at least `sensitivity` of the positive groups at or above it (None: none)."""
    n = int(positives.sum())
    if n == 0:
        return None
    need = int(np.ceil(sensitivity * n))
    above_each = n - np.cumsum(positives)[:-1]  # at or above grid point j
    hits = np.flatnonzero(above_each >= need)
    return int(hits[-1]) if hits.size else 0


def binned_auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUROC of two binned score sets (pairs in one bin count one half)."""
    p, n = np.asarray(positives, float), np.asarray(negatives, float)
    if p.sum() == 0 or n.sum() == 0:
        return float("nan")
    below_n = np.concatenate([[0.0], np.cumsum(n)[:-1]])
    return float(np.sum(p * (below_n + 0.5 * n)) / (p.sum() * n.sum()))


def figures(s: Summary, grid: np.ndarray, j: int | None) -> dict[str, Any]:
    """What grid point j gives on the summarised cases, under the central record's names
    (nstage.training.thresholds.operating_point, nstage.training.operating_points)."""
    n_benign, n_pos = int(s.benign.sum()), int(s.positive_groups.sum())
    nan = float("nan")
    return {"validation_cases": int(s.cases),
            "validation_n_stage_accuracy": float(s.staged_right[j]) / s.cases if s.cases and j is not None else nan,
            "validation_benign_stations": n_benign,
            "validation_benign_specificity": below(s.benign, j) / n_benign if n_benign and j is not None else nan,
            "validation_sensitivity": at_or_above(s.positive_groups, j) / n_pos if n_pos and j is not None else nan,
            "sensitivity_of": "N-positive groups"}


def threshold_at(grid: np.ndarray, j: int | None) -> float:
    """The grid's threshold j (0.5 where no case could choose one, as the central rules)."""
    return 0.5 if j is None else float(grid[j])


def choose_points(s: Summary, grid: np.ndarray, settings: dict[str, Any], staging: int | None) -> dict[str, dict[str, Any]]:
    """The named operating points chosen on summed counts, with their figures: `staging` is the model's threshold
    (grid index), station and triage as nstage.training.operating_points chooses them."""
    station, triage = float(settings["station"]["specificity"]), float(settings["triage"]["sensitivity"])
    chosen = {"staging": (staging, "the threshold that stages the most patients right (TNM 8)"),
              "station": (specificity_index(s.benign, station), f"specificity {station:.2f} of the stations known to be benign"),
              "triage": (sensitivity_index(s.positive_groups, triage),
                         f"sensitivity {triage:.2f} of the N-positive groups (a station of the group at or above it)")}
    return {name: {"threshold": threshold_at(grid, j), "rule": rule, **figures(s, grid, j)} for name, (j, rule) in chosen.items()}
