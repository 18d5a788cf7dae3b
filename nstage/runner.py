"""`nstage run`: the holoscan-free runner; analyse one study and write all its outputs atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nstage.errors import InputError
from nstage.outputs.folder import (
    RESULT,
    build_report,
    build_seg,
    build_sr,
    save_outputs,
)
from nstage.pipeline import RunOptions, analyse_study
from nstage.progress import StageTimer


def warm_up(models_dir: Path, options: RunOptions) -> None:
    """Load once in this process what every study needs: the classifier, the atlas(es) and the registration backend's library.

    For long-lived workers (the routing node's warm pipeline workers): their studies then start warm. Loaders
    cache per process, so a later :func:`run` reuses what is loaded here.
    """
    from nstage.analysis.classifier.slot import load_classifier
    from nstage.pipeline import load_default_atlases

    load_classifier(Path(models_dir))
    load_default_atlases(options)
    preload_registration_backend(options.registration)


def preload_registration_backend(asked: str | None) -> str:
    """Load the library of the backend a run would choose (`asked`, or the setting); returns its name.

    Elastix through ITK's module: ITK loads the shared libraries of Elastix and its dependencies on first use
    (29 s on 2 busy cores, 3-10 s on quiet ones), so an Elastix parameter object and a small image are made here.
    Elastix's programs: nothing to load (each registration starts them). Torch: the backend's modules (torch, hf-deepali).
    """
    import numpy as np

    from nstage.geometry import Grid
    from nstage.stationmap.registration_settings import elastix_folder, load_settings, resolve_backend, resolve_runner

    settings = load_settings()
    chosen = resolve_backend(asked or settings.backend)
    if chosen == "elastix" and resolve_runner(settings.elastix_runner) == "program":
        return chosen
    if chosen == "elastix":
        from nstage.stationmap.itk_bridge import itk_module, read_parameter_files, to_itk

        read_parameter_files([elastix_folder() / f for f in settings.parameter_files])
        to_itk(np.zeros((2, 2, 2), np.float32), Grid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)))
        itk = itk_module()
        _ = (itk.elastix_registration_method, itk.transformix_deformation_field)
    else:
        import deepali.core.bspline  # noqa: F401 - loaded for the backend
        import deepali.losses.functional  # noqa: F401

        import nstage.stationmap.registration_torch  # noqa: F401
    return chosen


def run(study_dir: Path, out_dir: Path, models_dir: Path, options: RunOptions, seg_type: str = "BINARY") -> dict[str, Any]:
    """Analyse a study; write SEG, SR, report, result.json and stations.nii.gz into OUT_DIR; return result.json's content."""
    timer = StageTimer()
    if not Path(study_dir).is_dir():
        raise InputError(f"study folder {study_dir} does not exist")
    if not Path(models_dir).is_dir():
        raise InputError(f"models folder {models_dir} does not exist (pass -m with the app's models folder)")
    analysis = analyse_study(Path(study_dir), Path(models_dir), options, timer)
    with timer.stage("SEG"):
        seg = build_seg(analysis, seg_type)
    with timer.stage("SR"):
        sr = build_sr(analysis, seg)
    with timer.stage("report"):
        report = build_report(analysis, seg, sr[0])
    with timer.stage("write outputs"):
        save_outputs(Path(out_dir), analysis, timer.timings, seg, sr, report)
    return json.loads((Path(out_dir) / RESULT).read_text())
