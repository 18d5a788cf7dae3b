"""How strong each sign of the synthetic cohort is, read alone, against its published strength.

Everything is measured on rendered cases with their truth (no registration, no model): SUVmax in
the true station regions and in each true node (PET sampled at the CT voxel centres), the true
nodes' size, density and signs. Targets, their ranges and sources: config/synth/calibration.json.
The rows are what bench/synth/synth_calibration.py reports and tests/synth check on a smaller cohort.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import mannwhitneyu

from nstage.analysis.measure import station_uptake, suv_peak_map
from nstage.cohort_executor import ExecutorOptions, map_all
from nstage.paths import config_dir
from nstage.progress import StageTimer
from nstage.stations import load_stations
from nstage.synth.case import RenderedCase, render_case
from nstage.synth.disease import DiseaseSpec, sample_disease
from nstage.synth.phantom import sphere_recovery
from nstage.synth.render import TUMOUR_INSTANCE

SUV_THRESHOLD = 2.5
SIZE_THRESHOLD_MM = 10.0


@dataclass(frozen=True)
class StationRow:
    """One true station of one rendered case, with what each single sign reads there."""

    case: int
    station: str
    malignant: bool
    suv_max: float  # in the true station region
    largest_short_axis_mm: float = 0.0
    node_suv_max: float = 0.0  # hottest true node, measured on the PET
    tumour_suv_max: float = 0.0
    contrast: bool = False
    features: dict[str, float] = field(default_factory=dict)  # true node features (the oracle's input)


@dataclass(frozen=True)
class NodeRow:
    """One true node with a short axis of at least 4 mm, as rendered."""

    case: int
    kind: str
    short_axis_mm: float
    suv_max: float
    hu_mean: float | None
    contrast: bool
    fatty_hilum: bool


@dataclass(frozen=True)
class CaseRows:
    case: int
    stations: list[StationRow]
    nodes: list[NodeRow]
    truth: dict[str, Any]


@lru_cache(maxsize=1)
def calibration_targets() -> dict[str, Any]:
    return json.loads((config_dir() / "synth" / "calibration.json").read_text())


def _station_features(nodes: list[dict[str, Any]], contrast: bool) -> dict[str, float]:
    """The true features of a station's nodes a perfect reader would have (largest and hottest node)."""
    largest = max(nodes, key=lambda n: n["short_axis_mm"])
    hottest = max(nodes, key=lambda n: n["suv"])
    return {
        "largest_short_axis_mm": largest["short_axis_mm"],
        "largest_axis_ratio": largest["short_axis_mm"] / max(largest["long_axis_mm"], 1e-6),
        "hottest_suv": hottest["suv"],
        "hottest_short_axis_mm": hottest["short_axis_mm"],
        "largest_hu": largest.get("hu_mean") or 0.0,
        "hottest_hu": hottest.get("hu_mean") or 0.0,
        "any_fatty_hilum": float(any(n["fatty_hilum"] for n in nodes if n["short_axis_mm"] >= 5)),
        "any_calcified": float(any(n["calcified"] for n in nodes)),
        "any_necrotic": float(any(n["necrotic"] for n in nodes)),
        "contrast": float(contrast),
    }


def case_rows(rc: RenderedCase, index: int) -> CaseRows:
    """Measure every station and node of one rendered case."""
    truth = rc.truth
    contrast = bool(truth["ct"]["contrast"])
    peak = suv_peak_map(rc.suv, rc.pet_grid)
    stations = station_uptake(rc.suv, rc.pet_grid, rc.stations, rc.ct_grid, peak)
    lesions = station_uptake(rc.suv, rc.pet_grid, rc.instance, rc.ct_grid, peak)
    tumour = lesions[TUMOUR_INSTANCE].suv_max if TUMOUR_INSTANCE in lesions else 0.0
    by_station: dict[str, list[dict[str, Any]]] = defaultdict(list)
    node_rows = []
    for n in truth["nodes"]:
        measured = lesions[n["instance"]].suv_max if n["instance"] in lesions else 0.0
        n = {**n, "suv_max_measured": measured}
        by_station[n["station"]].append(n)
        if n["short_axis_mm"] >= 4.0:
            node_rows.append(NodeRow(index, n["kind"], n["short_axis_mm"], measured, n["hu_mean"], contrast, n["fatty_hilum"]))
    rows = []
    for s in load_stations():
        own = by_station.get(s.station, [])
        rows.append(StationRow(
            index, s.station, bool(truth["stations"][s.station]["malignant"]),
            stations[s.label].suv_max if s.label in stations else 0.0,
            max((n["short_axis_mm"] for n in own), default=0.0),
            max((n["suv_max_measured"] for n in own), default=0.0),
            tumour, contrast, _station_features(own, contrast) if own else {},
        ))
    return CaseRows(index, rows, node_rows, truth)


def _render_rows(args: tuple[int, int, str]) -> CaseRows:
    seed, index, preset = args
    rc = render_case(f"case_{index:04d}", seed, index, preset, "default", None, StageTimer())
    return case_rows(rc, index)


def cohort_rows(seed: int, cases: int, preset: str = "small", jobs: int | ExecutorOptions = 2, progress: bool = False) -> list[CaseRows]:
    """Render `cases` cases (no DICOM) and measure them on the cohort executor; `progress` logs a bar line per case."""
    return map_all(_render_rows, [(seed, i, preset) for i in range(cases)], jobs, label="rendered" if progress else None)


def station_rows(seed: int, cases: int, preset: str = "small", jobs: int | ExecutorOptions = 2) -> list[StationRow]:
    """The station rows of a rendered cohort."""
    return [r for c in cohort_rows(seed, cases, preset, jobs) for r in c.stations]


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U over positives x negatives; ties count half)."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    if y.all() or not y.any():
        return float("nan")
    return float(mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum()))


def _sens_spec(called: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    return {"sensitivity": float(called[positive].mean()), "specificity": float((~called[~positive]).mean()),
            "n_malignant": int(positive.sum()), "n_benign": int((~positive).sum())}


def threshold_rule_performance(rows: list[StationRow], threshold: float = SUV_THRESHOLD) -> dict[str, float]:
    """Station-level sensitivity and specificity of region SUVmax >= threshold."""
    y = np.array([r.malignant for r in rows])
    return {"threshold": threshold, **_sens_spec(np.array([r.suv_max for r in rows]) >= threshold, y)}


def size_rule_performance(rows: list[StationRow], threshold: float = SIZE_THRESHOLD_MM) -> dict[str, float]:
    """Station-level sensitivity and specificity of 'largest true node short axis >= threshold'."""
    y = np.array([r.malignant for r in rows])
    return {"threshold_mm": threshold, **_sens_spec(np.array([r.largest_short_axis_mm for r in rows]) >= threshold, y)}


def tumour_ratio_auroc(rows: list[StationRow]) -> float:
    """AUROC of the hottest node's measured SUVmax over the primary tumour's SUVmax."""
    ratio = np.array([r.node_suv_max / r.tumour_suv_max if r.tumour_suv_max > 0 else 0.0 for r in rows])
    return auroc(ratio, np.array([r.malignant for r in rows]))


def uptake_by_size(nodes: list[NodeRow], bins: tuple[float, ...] = (10.0, 15.0), threshold: float = SUV_THRESHOLD) -> list[dict[str, Any]]:
    """Share of metastatic nodes with measured SUVmax >= threshold by short-axis band."""
    mal = [n for n in nodes if n.kind == "malignant"]
    edges = (0.0, *bins, float("inf"))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = [n for n in mal if lo <= n.short_axis_mm < hi]
        share = float(np.mean([n.suv_max >= threshold for n in band])) if band else float("nan")
        out.append({"short_axis_mm": [lo, None if hi == float("inf") else hi], "n": len(band), "share_suv_max_ge_2_5": share})
    return out


def _design(rows: list[StationRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = sorted(rows[0].features)
    x = np.array([[r.features[k] for k in keys] for r in rows], float)
    for j, k in enumerate(keys):
        if "suv" in k or "short_axis" in k:
            x[:, j] = np.log(np.maximum(x[:, j], 1e-3))
    # density matters differently with and without contrast: give the model both interactions
    c = x[:, keys.index("contrast")][:, None]
    hu = x[:, [keys.index("largest_hu"), keys.index("hottest_hu")]]
    x = np.hstack([x, hu * c])
    return x, np.array([r.malignant for r in rows], bool), np.array([r.case for r in rows])


def _logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """L2-regularised logistic regression (bias unpenalised, last) by L-BFGS with its line search.

    Plain Newton steps, used before, can overshoot on nearly separable folds and end far from the
    optimum (a cross-validated oracle of 0.62 on one cohort); the line search cannot.
    """
    a = np.hstack([x, np.ones((len(x), 1))])

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = a @ w
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.sum(w[:-1] ** 2))
        return loss, a.T @ (expit(z) - y) + l2 * np.r_[w[:-1], 0.0]

    fit = minimize(loss_and_grad, np.zeros(a.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9})
    return fit.x


def oracle_auroc(rows: list[StationRow], folds: int = 5, seed: int = 0) -> float:
    """Cross-validated (by case) AUROC of a logistic model on every true node feature of a station."""
    rows = [r for r in rows if r.features]
    x, y, case = _design(rows)
    cases = np.unique(case)
    fold_of = dict(zip(np.random.default_rng(seed).permutation(cases), np.arange(cases.size) % folds))
    f = np.array([fold_of[c] for c in case])
    scores = np.zeros(len(y))
    for k in range(folds):
        train, test = f != k, f == k
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
        w = _logistic_fit((x[train] - mu) / sd, y[train].astype(float))
        scores[test] = np.hstack([(x[test] - mu) / sd, np.ones((test.sum(), 1))]) @ w
    return auroc(scores, y)


def hu_figures(nodes: list[NodeRow], min_short_axis_mm: float = 8.0) -> dict[str, float]:
    """Mean true node density on unenhanced and enhanced CT: metastatic, fat-containing benign, and AUROC of HU alone."""
    big = [n for n in nodes if n.short_axis_mm >= min_short_axis_mm and n.hu_mean is not None]
    out: dict[str, float] = {}
    for contrast, tag in ((False, "unenhanced"), (True, "contrast")):
        sel = [n for n in big if n.contrast == contrast]
        mal = [n.hu_mean for n in sel if n.kind == "malignant"]
        fat = [n.hu_mean for n in sel if n.kind != "malignant" and n.fatty_hilum]
        out[f"{tag}_malignant_hu_mean"] = float(np.mean(mal)) if mal else float("nan")
        out[f"{tag}_fat_containing_benign_hu_mean"] = float(np.mean(fat)) if fat else float("nan")
        out[f"{tag}_hu_auroc"] = auroc(np.array([n.hu_mean for n in sel]), np.array([n.kind == "malignant" for n in sel])) if sel else float("nan")
    return out


def sampled_diseases(seed: int = 16, patients: int = 2000) -> list[DiseaseSpec]:
    """Patients drawn from the disease model alone (no rendering): for patient-level shares, which
    a rendered cohort of 50 holds too few patients to measure."""
    return [sample_disease(np.random.default_rng([seed, i])) for i in range(patients)]


def bilateral_benign_share(diseases: list[DiseaseSpec]) -> float:
    """Among patients with FDG-avid benign (reactive) nodes, the share with them on both sides."""
    with_avid = [d for d in diseases if any(n.kind == "reactive" for n in d.nodes)]
    both = [d for d in with_avid if {n.station[-1] for n in d.nodes if n.kind == "reactive" and n.station[-1] in "RL"} == {"R", "L"}]
    return len(both) / len(with_avid) if with_avid else float("nan")


def calcified_share_of_avid_benign(diseases: list[DiseaseSpec]) -> float:
    """Share of FDG-avid benign (reactive) nodes that carry calcium."""
    avid = [n for d in diseases for n in d.nodes if n.kind == "reactive"]
    return float(np.mean([n.calcified for n in avid])) if avid else float("nan")


def skip_metastasis_share(diseases: list[DiseaseSpec]) -> float:
    """Among N2 patients (TNM 8), the share without a malignant hilar/intrapulmonary (N1) station."""
    n2 = [d for d in diseases if d.target_n == "N2"]
    skip = [d for d in n2 if not any(s[:2] in ("10", "11") for s in d.malignant_stations)]
    return len(skip) / len(n2) if n2 else float("nan")


def phantom_rows(preset: dict[str, Any], trials: int = 8) -> list[dict[str, Any]]:
    """Sphere recovery at both ends of the preset's PET resolution, at the accreditation noise level."""
    out = []
    cov = calibration_targets()["phantom_background_cov"]
    for fwhm in preset["pet_fwhm_mm"]:
        for r in sphere_recovery(fwhm, cov, preset["pet_pixel_mm"], preset["pet_slice_mm"], trials=trials):
            out.append(asdict(r))
    return out


def calibration_table(cohort: list[CaseRows], preset: dict[str, Any]) -> list[dict[str, Any]]:
    """Every calibration row: measured value, target range, source, and whether it is inside."""
    targets = calibration_targets()["rows"]
    stations = [r for c in cohort for r in c.stations]
    nodes = [n for c in cohort for n in c.nodes]
    diseases = sampled_diseases()
    suv = threshold_rule_performance(stations)
    size = size_rule_performance(stations)
    hu = hu_figures(nodes)
    measured: dict[str, float] = {
        "suv_rule_sensitivity": suv["sensitivity"], "suv_rule_specificity": suv["specificity"],
        "size_rule_sensitivity": size["sensitivity"], "size_rule_specificity": size["specificity"],
        "tumour_ratio_auroc": tumour_ratio_auroc(stations),
        "hottest_node_suv_auroc": auroc(np.array([r.node_suv_max for r in stations]), np.array([r.malignant for r in stations])),
        "station_suv_max_auroc": auroc(np.array([r.suv_max for r in stations]), np.array([r.malignant for r in stations])),
        "oracle_auroc": oracle_auroc(stations),
        "bilateral_benign_share": bilateral_benign_share(diseases),
        "skip_metastasis_share": skip_metastasis_share(diseases),
        "calcified_share_of_avid_benign": calcified_share_of_avid_benign(diseases),
        **{k: v for k, v in hu.items()},
    }
    counts: dict[str, int] = {}
    for band in uptake_by_size(nodes):
        lo, hi = band["short_axis_mm"]
        key = f"avid_share_{int(lo)}_{'up' if hi is None else int(hi)}mm"
        measured[key] = band["share_suv_max_ge_2_5"]
        counts[key] = band["n"]
    for r in phantom_rows(preset):
        measured[f"rc_max_{int(r['diameter_mm'])}mm_fwhm_{r['fwhm_mm']:g}"] = r["rc_max"]
    out = []
    for key, value in measured.items():
        t = targets.get(key) or targets.get(key.split("_fwhm_")[0]) or {}
        lo, hi = t.get("range", [None, None])
        inside = None if lo is None or not np.isfinite(value) else bool(lo <= value <= hi)
        row = {"row": key, "measured": round(float(value), 3), "range": t.get("range"), "inside": inside, "source": t.get("source", "")}
        if key in counts:
            row["n"] = counts[key]
        out.append(row)
    return out
