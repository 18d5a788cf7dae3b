"""The steps behind `nstage train` and `nstage evaluate`: cohorts -> cache -> split -> train -> export / report."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from nstage.analysis.classifier.settings import classifier_config, patch_settings
from nstage.cohort_executor import ExecutorOptions
from nstage.errors import InputError
from nstage.training.cache import CachedCase, build_cache, load_cached
from nstage.training.cohort import read_cohorts

log = logging.getLogger("nstage.training")


def cached_cohort(roots: list[Path], source: str, cfg: dict[str, Any], cache: Path | None = None, jobs: int | ExecutorOptions = 1,
                  build: bool = True) -> list[CachedCase]:
    """Read cohort folders, cache every study once (registration or truth station maps), load the cache."""
    cases = read_cohorts([Path(r) for r in roots])
    settings = patch_settings(cfg)
    if build:
        errors = build_cache(cases, source, settings, cache, jobs, str(cfg["training"].get("rules", "tnm")))
        if errors:
            log.warning("%d of %d studies could not be cached and are left out", len(errors), len(cases))
    cached = load_cached(cases, source, settings, cache)
    if not cached:
        raise InputError("no study of the cohort could be cached (see the warnings above)")
    return cached


def describe_training_data(cases: list[CachedCase], source: str) -> str:
    """'synthetic (...)' for generator cohorts (seed, preset, case count), else the cohort names."""
    gens = set()
    for c in cases:
        p = c.case.study_dir.parent / "truth.json"
        if p.is_file():
            g = json.loads(p.read_text()).get("generator", {})
            gens.add((g.get("name"), g.get("preset"), g.get("seed")))
    if gens and all(g[0] == "nstage-synth" for g in gens):
        seeds = ", ".join(str(g[2]) for g in sorted(gens, key=str))
        presets = ", ".join(sorted({str(g[1]) for g in gens}))
        return f"synthetic (nstage synth, preset {presets}, seed(s) {seeds}; {len(cases)} cases; station maps: {source})"
    return f"{len(cases)} cases from cohort(s) {', '.join(sorted({c.case.cohort for c in cases}))}; station maps: {source}"


def model_metadata(cfg: dict[str, Any], threshold: float, supervised: bool, training_data: str,
                   extra: dict[str, Any]) -> dict[str, Any]:
    from nstage.stations import load_stations

    m, t = cfg["model"], cfg["training"]
    pooling = str(t.get("pooling", "max")).replace("_", "-")
    reads = ("node and context patches (CT/SUV/station mask), node measurements"
             + (", attention over the patient's stations and tumour" if m.get("patient_context") else ", each station alone"))
    members = int(extra.get("ensemble", {}).get("members", 1))
    return {"name": m["name"], "version": m["version"],
            "kind": (f"cross-fitted ensemble of {members}: " if members > 1 else "")
            + ("fully supervised (station labels)" if supervised else f"weakly supervised (N-stage group labels, {pooling} pooling)")
            + f" 3D CNN on {reads}",
            "training_data": training_data, "threshold": threshold, "patch": cfg["patch"], "model": m,
            "training": cfg["training"], "stations": [s.station for s in load_stations()], **extra}


def train_command(cohorts: list[Path], source: str, out: Path | None, export: Path | None, config: Path | None,
                  epochs: int | None, supervised: bool, resume: bool, jobs: int | ExecutorOptions, cache: Path | None) -> dict[str, Any]:
    """Cache, train (one network on a stratified validation split, or a cross-fitted ensemble: the config's
    training.ensemble_folds), and export the model when asked."""
    import torch

    from nstage.training.ensemble import RULE, fit
    from nstage.training.train import _dist, init_distributed

    cfg = classifier_config(config)
    distributed = init_distributed()
    rank, _ = _dist()
    if rank == 0:
        cached = cached_cohort(cohorts, source, cfg, cache, jobs)
    if distributed:
        torch.distributed.barrier()
    if rank != 0:
        cached = cached_cohort(cohorts, source, cfg, cache, build=False)
    t0 = time.time()
    fitted = fit(cached, cfg, supervised, out, resume, epochs)
    single = len(fitted.members) == 1
    summary = {"cases": len(cached), "train": fitted.train_cases, "validation": fitted.validation_cases,
               "ensemble_members": len(fitted.members), "supervised": supervised,
               "threshold": fitted.threshold, "operating_point": fitted.operating, "operating_points": fitted.points,
               "members": fitted.members,
               "train_seconds": round(time.time() - t0, 1), "world_size": _dist()[1]}
    if single:  # the one network's record at the top level, as before ensembles
        summary.update({k: fitted.members[0][k] for k in ("best_epoch", "history", "calibration")})
    if rank == 0:
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "training.json").write_text(json.dumps(summary, indent=1))
        if export:
            from nstage.analysis.classifier.export import export_torchscript

            extra: dict[str, Any] = {"train_cases": fitted.train_cases, "validation_cases": fitted.validation_cases,
                                     "operating_point": fitted.operating, "operating_points": fitted.points}
            if single:
                extra.update({"best_epoch": fitted.members[0]["best_epoch"], "calibration": fitted.members[0]["calibration"]})
            else:
                extra["ensemble"] = {"members": len(fitted.members), "rule": RULE,
                                     **{k: [m[k] for m in fitted.members] for k in ("seed", "best_epoch", "calibration")}}
            meta = model_metadata(cfg, fitted.threshold, supervised, describe_training_data(cached, source), extra)
            summary["exported"] = str(export_torchscript(fitted.model, meta, export, patch_settings(cfg)))
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def predict_exported(model_file: Path, cases: list[CachedCase]) -> tuple[list[np.ndarray], float, dict[str, Any]]:
    """Station probabilities of cached cases from an exported model (the same inputs as inference)."""
    import torch

    from nstage.analysis.classifier.batch import slot_batch
    from nstage.analysis.classifier.export import load_torchscript
    from nstage.analysis.classifier.settings import PatchSettings

    module, meta = load_torchscript(model_file)
    settings = PatchSettings.from_dict(meta["patch"])
    out = []
    with torch.no_grad():
        for c in cases:
            x = [torch.from_numpy(a) for a in slot_batch([c.inputs], settings).as_tuple()]
            p = torch.sigmoid(module(*x))[0].numpy()
            out.append(p[c.labels - 1])
    return out, float(meta["threshold"]), meta


def evaluate_command(cohorts: list[Path], source: str, out: Path, config: Path | None, epochs: int | None, jobs: int | ExecutorOptions,
                     cache: Path | None, model: Path | None, train_cohorts: list[Path], train_source: str,
                     work: Path | None, build: bool = True) -> dict[str, Any]:
    """Cross-validation (no --model) or held-out testing of an exported model (--model)."""
    from nstage.analysis.classifier.layout import find_model
    from nstage.training.evaluate import (
        MethodOutput,
        baselines,
        cross_validate,
        write_report,
    )
    from nstage.training.ensemble import fit
    from nstage.training.train import predict, prepare

    cfg = classifier_config(config)
    cases = cached_cohort(cohorts, source, cfg, cache, jobs, build)
    if any(c.truth() is None for c in cases):
        raise InputError("evaluation needs station labels for every case (truth.json 'stations')")
    notes = [f"Station maps: {source}. Config: {config or 'config/classifier.json'}. Cohort(s): "
             + ", ".join(f"{Path(r).name} ({sum(c.case.cohort == Path(r).name for c in cases)} cases)" for r in cohorts) + "."]
    if model is None:
        methods, folds = cross_validate(cases, cfg, epochs, work)
        title = f"{cfg['evaluation']['folds']}-fold cross-validation"
        extra: dict[str, Any] = {"folds": folds, "kind": "cross-validation"}
    else:
        mf = find_model(model)
        if mf is None:
            raise InputError(f"no station model in {model} (expected {model}/station_cnn/model.ts)")
        probs, thr, meta = predict_exported(mf, cases)
        methods = [MethodOutput("weak", probs, [p >= thr for p in probs])]
        extra = {"kind": "held-out", "model": {k: meta[k] for k in ("name", "version", "kind", "training_data", "threshold")}}
        title = "Held-out test of the shipped model"
        notes.append(f"Model: {meta['name']} {meta['version']} ({meta['kind']}); trained on {meta['training_data']}.")
        if train_cohorts:
            tc = cached_cohort(train_cohorts, train_source, cfg, None, jobs)
            sup = fit(tc, cfg, True, work / "supervised" if work else None, True, epochs)
            p = predict(sup.model, prepare(cases, cfg["training"]), patch_settings(cfg))
            methods.append(MethodOutput("supervised", p, [x >= sup.threshold for x in p]))
            extra["supervised"] = {"train_cases": sup.train_cases, "validation_cases": sup.validation_cases, "members": len(sup.members),
                                   "threshold": sup.threshold, "station_source": train_source}
            notes.append(f"Fully supervised upper bound trained as the shipped recipe on the same training cohort ({len(tc)} cases, "
                         f"{len(sup.members)} member(s)).")
    methods += baselines(cases, cfg["training"].get("rules", "tnm"))
    return write_report(out, cases, methods, cfg, title, notes, extra)
