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
