"""Named operating points for a cross-fitted ensemble exported before they existed, without retraining it.

  python -m nstage.training.replay_points --model MODELS_DIR --cohort DIR [--cohort DIR ...] [--stations truth]
                                          [--version X.Y.Z]

Each member of the exported ensemble is run on its own validation fold (the folds `nstage train` dealt
from the training seed, nstage.training.splits.stratified_folds, over the same cohorts in the same
order), which gives every training case's out-of-fold probability as training had it; the points of
nstage.training.operating_points are chosen on those. The model's staging threshold is kept as trained;
the replay's own staging threshold and N-stage accuracy are recorded beside it as a check. The
metadata (metadata.json and the copy embedded in model.ts) gains `operating_points` and a note of how
they were made; the weights are untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nstage.analysis.classifier.layout import METADATA, find_model
from nstage.analysis.classifier.settings import PatchSettings
from nstage.errors import InputError
from nstage.training.cache import CachedCase
from nstage.training.operating_points import choose_operating_points
from nstage.training.splits import stratified_folds
from nstage.training.thresholds import operating_point, staging_inputs, staging_threshold
from nstage.training.train import prepare

log = logging.getLogger("nstage.training")


def out_of_fold(module: Any, meta: dict[str, Any], cases: list[CachedCase]) -> list[np.ndarray]:
    """Each case's probability from the member that did not train on it."""
    tcfg = meta["training"]
    k = int(meta.get("ensemble", {}).get("members", 1))
    if k < 2:
        raise InputError("the model is not a cross-fitted ensemble: it has no out-of-fold members to replay")
    import torch

    from nstage.analysis.classifier.batch import slot_batch

    settings = PatchSettings.from_dict(meta["patch"])
    oof: list[np.ndarray | None] = [None] * len(cases)
    with torch.no_grad():
        for f, val in enumerate(stratified_folds(cases, k, int(tcfg["seed"]))):
            member = getattr(module.members, str(f))  # the exported module's f-th network, in the slot layout
            for i in val:
                c = cases[int(i)]
                node, context, features, patient, present = (torch.from_numpy(a) for a in slot_batch([c.inputs], settings).as_tuple())
                # by name: tracing orders a member's arguments by first use, not as the ensemble passes them
                logits = member(node=node, context=context, features=features, patient=patient, present=present)
                oof[int(i)] = torch.sigmoid(logits)[0].numpy()[c.labels - 1]
    return [p for p in oof if p is not None]


def replayed_points(module: Any, meta: dict[str, Any], cases: list[CachedCase], settings: dict[str, Any]) -> dict[str, Any]:
    """The operating points (the trained staging threshold kept) and the replay's check figures."""
    tcfg = meta["training"]
    oof = out_of_fold(module, meta, cases)
    examples = prepare(cases, tcfg)
    maxima, levels = staging_inputs(oof, cases, str(tcfg.get("rules", "tnm")))
    points = choose_operating_points(oof, examples, maxima, levels, float(meta["threshold"]), False, settings)
    replay_staging = staging_threshold(maxima, levels)
    check = {"cases": len(cases), "trained_staging_threshold": float(meta["threshold"]), "replayed_staging_threshold": replay_staging,
             "replayed_at_replayed_staging": operating_point(oof, examples, maxima, levels, replay_staging, False),
             "trained_out_of_fold": meta.get("operating_point", {})}
    return {"points": points, "check": check}


def write_metadata(model_file: Path, meta: dict[str, Any]) -> None:
    """metadata.json and the copy embedded in model.ts (the module re-saved with it; weights unchanged)."""
    import torch

    module = torch.jit.load(str(model_file), map_location="cpu")
    text = json.dumps(meta, indent=1)
    tmp = model_file.with_name(model_file.name + ".tmp")
    torch.jit.save(module, str(tmp), _extra_files={METADATA: text})
    tmp.replace(model_file)
    (model_file.parent / METADATA).write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    from nstage.analysis.classifier.export import load_torchscript
    from nstage.analysis.classifier.settings import classifier_config
    from nstage.training.workflow import cached_cohort

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="models folder (MODELS/station_cnn/model.ts)")
    p.add_argument("--cohort", type=Path, action="append", required=True, help="the training cohorts, in training order")
    p.add_argument("--stations", choices=("truth", "registration"), default="truth")
    p.add_argument("--version", help="the model's new version (default: unchanged)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    model_file = find_model(a.model)
    if model_file is None:
        raise SystemExit(f"error: no model in {a.model}")
    module, meta = load_torchscript(model_file)
    cfg = classifier_config()
    cases = cached_cohort(a.cohort, a.stations, cfg)
    if len(cases) != int(meta.get("train_cases", len(cases))):
        raise SystemExit(f"error: {len(cases)} cached cases, the model was trained on {meta.get('train_cases')}: give the training cohorts")
    res = replayed_points(module, meta, cases, cfg["training"]["operating_points"])
    meta["operating_points"] = res["points"]
    meta["operating_points_note"] = ("chosen after training by replaying each member on its own fold (nstage.training.replay_points); "
                                     f"check: {json.dumps(res['check'])}")
    if a.version:
        meta["version"] = meta["model"]["version"] = a.version
    write_metadata(model_file, meta)
    print(json.dumps({"operating_points": {n: p["threshold"] for n, p in res["points"].items()}, "check": res["check"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
