"""The analysis of one study, as plain stage functions (`nstage run` and the MONAI Deploy operators call them).

load study -> stations (atlas registration) -> station measurements + blood pool -> tumour side
-> station classifier -> N rules + baselines -> result document. :func:`analyse_study` chains them;
nstage/outputs/folder.py writes the outputs and nstage/runner.py is `nstage run`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nstage import __version__
from nstage.analysis.baselines import blood_pool_baseline, combined_baseline, ct_size_baseline, suvmax_baseline
from nstage.analysis.blood_pool import measure_blood_pool
from nstage.analysis.classifier.slot import load_classifier
from nstage.analysis.classifier.station_case import (
    StationCall,
    StationCase,
    StationClassifier,
)
from nstage.analysis.findings import Analysis, Staging, StationFindings
from nstage.analysis.measure import station_uptake, suv_peak_map
from nstage.analysis.nodes import StationNodes, read_nodes
from nstage.analysis.nrules import RulesError, load_rules, normalise_side, stage
from nstage.analysis.tumour_side import TumourSide, find_tumour_side
from nstage.errors import InputError
from nstage.ingest.study import Study, load_study
from nstage.paths import atlas_dir
from nstage.progress import StageTimer
from nstage.stationmap.atlas import AtlasImage, load_atlases
from nstage.stationmap.registration import StationResult, map_stations
from nstage.stationmap.registration_settings import BACKENDS
from nstage.stations import load_stations

log = logging.getLogger("nstage")


def _node_fields(nodes: StationNodes | None) -> dict[str, Any]:
    """result.json's node fields of one station (index_node, nodes, node_candidates)."""
    if nodes is None:
        return {"index_node": None, "nodes": [], "node_candidates": 0}
    return {"index_node": nodes.index_node.as_dict() if nodes.index_node else None,
            "nodes": [n.as_dict() for n in nodes.nodes], "node_candidates": nodes.candidates}


@dataclass(frozen=True)
class RunOptions:
    rules: str = "tnm"
    tumour_side: str | None = None  # given by the user; None = find it on the images
    atlas_dirs: tuple[Path, ...] = field(default_factory=tuple)
    registration: str | None = None  # elastix | torch | auto; None: `backend` of config/registration.json


def check_options(options: RunOptions) -> str | None:
    """Fail on a bad rule set or side before any work (InputError); the side given by the user (normalised) or None."""
    if options.registration is not None and options.registration not in BACKENDS:
        raise InputError(f"registration backend {options.registration!r}: choose one of {', '.join(BACKENDS)}")
    try:
        load_rules(options.rules)
        return normalise_side(options.tumour_side) if options.tumour_side else None
    except (RulesError, ValueError) as exc:
        raise InputError(str(exc)) from None


def load_default_atlases(options: RunOptions) -> list[AtlasImage]:
    """The atlases of the options (the shipped atlas when none given); cached per process."""
    return load_atlases(list(options.atlas_dirs) or [atlas_dir()])


def register_atlas(study: Study, atlases: list[AtlasImage], timer: StageTimer | None = None, backend: str | None = None) -> StationResult:
    """Register the atlas(es) to the CT and carry the stations over; InputError when it failed.

    `backend`: elastix | torch | auto (None: config/registration.json's `backend`)."""
    timer = timer or StageTimer()
    with timer.stage("stations (atlas registration)"):
        reg = map_stations(study.ct.array, study.ct.grid, atlases, timer=StageTimer(prefix="  "), backend=backend)
    return accepted(study, reg)


def accepted(study: Study, reg: StationResult) -> StationResult:
    """The registration when its station map can be used; InputError naming the reasons when it failed."""
    if reg.labels is None or reg.status == "failed":
        raise InputError(f"the atlas could not be registered to the CT series {study.ct.description!r}: {'; '.join(reg.grade.reasons)}")
    return reg


def measure_stations(study: Study, reg: StationResult, timer: StageTimer | None = None) -> StationFindings:
    """SUV figures of every mapped station and of the blood pool, the primary tumour, and the nodes of every station."""
    timer = timer or StageTimer()
    assert reg.labels is not None
    names = {s.label: s.station for s in load_stations()}
    ct, pet = study.ct, study.pet
    with timer.stage("station measurements"):
        peak = suv_peak_map(pet.array, pet.grid)  # once, for the stations and their nodes
        by_label = station_uptake(pet.array, pet.grid, reg.labels, ct.grid, peak)
        uptake = {names[k]: v for k, v in sorted(by_label.items())}
        pool = measure_blood_pool(reg.regions.get("blood_pool"), ct.array, ct.grid, pet.array, pet.grid)
    if not pool.available:
        log.warning("blood pool not measured: %s", pool.reason)
    with timer.stage("tumour side"):
        primary = find_tumour_side(ct.array, ct.grid, pet.array, pet.grid, reg.labels, pool.suv_mean, reg.lungs)
    with timer.stage("node reading"):
        tumour_suv = primary.primary.suv_max if primary.primary is not None else None
        nodes = read_nodes(ct.array, ct.grid, pet.array, pet.grid, reg.labels, names, pool.suv_mean, tumour_suv, peak=peak)
    return StationFindings(reg, reg.labels, uptake, pool, primary, nodes)


def find_stations(study: Study, atlases: list[AtlasImage], timer: StageTimer | None = None, backend: str | None = None) -> StationFindings:
    """Register the atlas to the CT (with `backend`, see :func:`register_atlas`), measure every station and the blood pool."""
    timer = timer or StageTimer()
    return measure_stations(study, register_atlas(study, atlases, timer, backend), timer)


def station_case(study: Study, findings: StationFindings, side: str | None) -> StationCase:
    """What the classifier reads of a study: images, station map, measurements, nodes, blood pool, tumour."""
    primary = findings.primary.primary if findings.primary is not None else None
    return StationCase(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, findings.labels, findings.uptake,
                       findings.nodes, findings.blood_pool.suv_mean, primary.suv_max if primary is not None else None, side)


def classify_stations(study: Study, findings: StationFindings, classifier: StationClassifier, side: str | None = None,
                      timer: StageTimer | None = None) -> dict[str, StationCall]:
    """The classifier's call for every station (`side`: the tumour side, given or found)."""
    timer = timer or StageTimer()
    with timer.stage("station classifier"):
        return classifier.classify(station_case(study, findings, side))


def tumour_side(study: Study, findings: StationFindings, side_given: str | None, timer: StageTimer | None = None) -> TumourSide:
    """The side given by the user, else the one found on the images (by measure_stations, or here)."""
    timer = timer or StageTimer()
    if side_given:
        return TumourSide(side_given, "user", reasons=("given by the user (--tumour-side)",))
    if findings.primary is not None:
        return findings.primary
    with timer.stage("tumour side"):
        return find_tumour_side(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, findings.labels,
                                findings.blood_pool.suv_mean, findings.registration.lungs)


def apply_rules(findings: StationFindings, side: TumourSide, calls: dict[str, StationCall], rules: str,
                timer: StageTimer | None = None) -> Staging:
    """N stage of the calls (with reasons) and both SUV baselines."""
    timer = timer or StageTimer()
    pool = findings.blood_pool.suv_mean
    with timer.stage("N rules"):
        n = stage([s for s, c in calls.items() if c.malignant], side.side, rules)
        names = dict.fromkeys(name for c in calls.values() for name in c.points)
        at = {name: stage([s for s, c in calls.items() if c.points.get(name)], side.side, rules) for name in names}
        baselines = [suvmax_baseline(findings.uptake, side.side, rules)]
        if pool is not None:
            baselines.append(blood_pool_baseline(findings.uptake, pool, side.side, rules))
        baselines.append(ct_size_baseline(findings.uptake, findings.nodes, side.side, rules))
        if pool is not None:
            baselines.append(combined_baseline(findings.uptake, findings.nodes, side.side, rules))
    return Staging(side, calls, n, tuple(baselines), rules, at)


def decide(study: Study, findings: StationFindings, classifier: StationClassifier, rules: str, side_given: str | None,
           timer: StageTimer | None = None) -> Staging:
    """Tumour side, station calls, N stage (with reasons) and both SUV baselines."""
    side = tumour_side(study, findings, side_given, timer)
    return apply_rules(findings, side, classify_stations(study, findings, classifier, side.side, timer), rules, timer)


def result_document(study: Study, findings: StationFindings, staging: Staging, model: Mapping[str, object]) -> dict[str, Any]:
    """result.json's content (contracts.md), without the timings."""
    names = [s.station for s in load_stations()]
    calls, side = staging.calls, staging.side
    baseline: dict[str, Any] = {b.name: b.as_dict() for b in staging.baselines}
    for name in ("blood_pool", "combined"):
        if name not in baseline:
            baseline[name] = {"name": name, "available": False, "reason": findings.blood_pool.reason}
    return {
        "app": {"name": "nstage", "version": __version__},
        "study": {"study_instance_uid": study.ct.study_uid, "ct_series": study.ct.series_uid, "pet_series": study.pet.series_uid},
        "tumour_side": side.side,
        "tumour_side_source": side.source,
        "tumour_side_detail": side.as_dict(),
        "n_stage": {"tnm8": staging.n_stage.tnm8, "tnm9": staging.n_stage.tnm9},
        "n_stage_reasons": list(staging.n_stage.reasons),
        "n_stage_at": {name: {"tnm8": n.tnm8, "tnm9": n.tnm9} for name, n in staging.n_stage_at.items()},
        "rule_set": staging.rule_set,
        "stations": {
            s: {"malignant": calls[s].malignant, "probability": calls[s].probability, "operating_points": dict(calls[s].points),
                "suv_max": round(u.suv_max, 3),
                "suv_mean": round(u.suv_mean, 3), "suv_peak": round(u.suv_peak, 3), "volume_ml": round(u.volume_ml, 2),
                "hottest_point_lps": [round(v, 1) for v in u.hottest_point_lps], **_node_fields(findings.nodes.get(s))}
            for s, u in findings.uptake.items()
        },
        "stations_missing": [s for s in names if s not in findings.uptake],
        "blood_pool": findings.blood_pool.as_dict(),
        "baseline": baseline,
        "registration": findings.registration.report(),
        "pet_suv": {"suv_type": study.pet.suv.suv_type, "units": study.pet.suv.units, "decay_correction": study.pet.suv.decay_correction},
        "model": dict(model),
        "timings_s": {},
    }


def analyse_study(study_dir: Path, models_dir: Path, options: RunOptions, timer: StageTimer) -> Analysis:
    """Run every stage on one study."""
    side_given = check_options(options)
    classifier = load_classifier(models_dir)
    with timer.stage("load study"):
        study = load_study(study_dir)
    findings = find_stations(study, load_default_atlases(options), timer, options.registration)
    staging = decide(study, findings, classifier, options.rules, side_given, timer)
    return Analysis(study, findings, staging, result_document(study, findings, staging, classifier.description))
