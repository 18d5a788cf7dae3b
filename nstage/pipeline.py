"""`nstage run`: the holoscan-free pipeline chaining the domain stages for one study.

load study -> stations (atlas registration) -> station measurements -> tumour side ->
station classifier -> N rules -> baselines -> result.json (written atomically).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nstage import __version__
from nstage.atlas import load_atlases
from nstage.atomic_output import staged_output
from nstage.baselines import blood_pool_baseline, suvmax_baseline
from nstage.errors import InputError
from nstage.geometry import save_nifti
from nstage.measure import StationUptake, station_uptake
from nstage.nrules import load_rules, normalise_side, stage
from nstage.paths import atlas_dir
from nstage.progress import StageTimer
from nstage.registration import map_stations
from nstage.station_classifier import StationCase, load_classifier
from nstage.stations import load_stations
from nstage.study import load_study
from nstage.tumour_side import TumourSide, find_tumour_side

log = logging.getLogger("nstage")
RESULT = "result.json"


@dataclass(frozen=True)
class RunOptions:
    rules: str = "tnm"
    tumour_side: str | None = None  # given by the user; None = find it on the images
    atlas_dirs: tuple[Path, ...] = field(default_factory=tuple)


def analyse_study(study_dir: Path, models_dir: Path, options: RunOptions, timer: StageTimer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every stage on one study; return result.json's content and the arrays worth saving."""
    load_rules(options.rules)  # unknown rule set: fail before any work
    side_given = normalise_side(options.tumour_side) if options.tumour_side else None
    classifier = load_classifier(models_dir)
    with timer.stage("load study"):
        study = load_study(study_dir)
    with timer.stage("stations (atlas registration)"):
        atlases = load_atlases(list(options.atlas_dirs) or [atlas_dir()])
        reg = map_stations(study.ct.array, study.ct.grid, atlases, timer=StageTimer(prefix="  "))
    if reg.labels is None or reg.status == "failed":
        raise InputError(f"the atlas could not be registered to the CT series {study.ct.description!r}: {'; '.join(reg.grade.reasons)}")
    names = {s.label: s.station for s in load_stations()}
    with timer.stage("station measurements"):
        by_label = station_uptake(study.pet.array, study.pet.grid, reg.labels, study.ct.grid)
        uptake: dict[str, StationUptake] = {names[k]: v for k, v in sorted(by_label.items())}
    with timer.stage("tumour side"):
        if side_given:
            side = TumourSide(side_given, "user", reasons=("given by the user (--tumour-side)",))
        else:
            side = find_tumour_side(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, reg.labels)
    with timer.stage("station classifier"):
        calls = classifier.classify(StationCase(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, reg.labels, uptake))
    with timer.stage("N rules"):
        n = stage([s for s, c in calls.items() if c.malignant], side.side, options.rules)
        baselines = [suvmax_baseline(uptake, side.side, options.rules)]
    result = {
        "app": {"name": "nstage", "version": __version__},
        "study": {"study_instance_uid": study.ct.study_uid, "ct_series": study.ct.series_uid, "pet_series": study.pet.series_uid},
        "tumour_side": side.side,
        "tumour_side_source": side.source,
        "tumour_side_detail": side.as_dict(),
        "n_stage": {"tnm8": n.tnm8, "tnm9": n.tnm9},
        "n_stage_reasons": list(n.reasons),
        "rule_set": options.rules,
        "stations": {
            s: {"malignant": calls[s].malignant, "probability": calls[s].probability, "suv_max": round(u.suv_max, 3),
                "suv_mean": round(u.suv_mean, 3), "suv_peak": round(u.suv_peak, 3), "volume_ml": round(u.volume_ml, 2),
                "hottest_point_lps": [round(v, 1) for v in u.hottest_point_lps]}
            for s, u in uptake.items()
        },
        "stations_missing": [s for s in names.values() if s not in uptake],
        "baseline": {b.name: b.as_dict() for b in baselines},
        "registration": reg.report(),
        "pet_suv": {"suv_type": study.pet.suv.suv_type, "units": study.pet.suv.units, "decay_correction": study.pet.suv.decay_correction},
        "model": classifier.description,
        "timings_s": {},
    }
    return result, {"stations": reg.labels, "ct_grid": study.ct.grid}


def run(study_dir: Path, out_dir: Path, models_dir: Path, options: RunOptions) -> dict[str, Any]:
    """Analyse a study and write OUT_DIR/result.json (and stations.nii.gz) atomically."""
    timer = StageTimer()
    if not Path(study_dir).is_dir():
        raise InputError(f"study folder {study_dir} does not exist")
    if not Path(models_dir).is_dir():
        raise InputError(f"models folder {models_dir} does not exist (pass -m with the app's models folder)")
    result, arrays = analyse_study(Path(study_dir), Path(models_dir), options, timer)
    with timer.stage("write outputs"), staged_output(Path(out_dir), stale=(RESULT, "stations.nii.gz")) as staging:
        save_nifti(arrays["stations"].astype(np.uint8), arrays["ct_grid"], staging / "stations.nii.gz")
        result["timings_s"] = dict(timer.timings)
        (staging / RESULT).write_text(json.dumps(result, indent=1))
    return result
