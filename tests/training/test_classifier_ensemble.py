"""Cross-fitted ensemble: every case is out of fold for exactly one member, the threshold is chosen on those
out-of-fold probabilities, the ensemble is the mean of its members' probabilities, it trains deterministically,
and it exports to TorchScript and loads in the pipeline's slot with the training probabilities (to 1e-5)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from nstage.analysis.classifier.export import export_torchscript, load_torchscript
from nstage.analysis.classifier.model import StationEnsemble
from nstage.training.ensemble import fit
from nstage.training.splits import stratified_folds
from nstage.training.thresholds import staging_inputs, staging_threshold
from nstage.training.train import new_model, predict, prepare
from nstage.training.operating_points import sensitivity_threshold
from nstage.training.weak_labels import group_scores, known_negatives
from nstage.training.workflow import train_command
from tests.training.test_classifier_training import TINY, TINY_SETTINGS, fake_cases, write_fake_cohort


def _cfg(folds: int) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["training"].update({"ensemble_folds": folds, "threshold": "staging"})
    return cfg


@pytest.fixture(scope="module")
def fitted():
    cases = fake_cases(16, seed=5)
    return cases, fit(cases, _cfg(2))


def test_every_case_is_out_of_fold_once_and_the_threshold_is_chosen_on_all_of_them(fitted):
    cases, f = fitted
    cfg = _cfg(2)
    folds = stratified_folds(cases, 2, int(cfg["training"]["seed"]))
    assert sorted(np.concatenate(folds)) == list(range(16))
    assert [m["validation_cases"] for m in f.members] == [len(x) for x in folds]
    assert [m["train_cases"] for m in f.members] == [16 - len(x) for x in folds]
    assert [m["seed"] for m in f.members] == [3, 4]  # seed + fold
    assert f.operating["validation_cases"] == 16 and f.operating["out_of_fold"]
    # the threshold is the staging rule on each case's probability from the member that did not train on it
    examples = prepare(cases, cfg["training"])
    oof = [None] * 16
    for member, val in zip(f.model.members, folds):
        for i, p in zip(val, predict(member, [examples[i] for i in val], TINY_SETTINGS)):
            oof[int(i)] = p
    assert f.threshold == pytest.approx(staging_threshold(*staging_inputs(oof, cases)))
    # the named operating points are read on the same out-of-fold probabilities
    points = f.points
    assert points["staging"]["threshold"] == f.threshold
    negatives = np.concatenate([known_negatives(p, e.weak) for p, e in zip(oof, examples)])
    assert np.mean(negatives < points["station"]["threshold"]) >= 0.9
    assert points["station"]["validation_benign_specificity"] == pytest.approx(np.mean(negatives < points["station"]["threshold"]))
    positive_groups = np.array([s for p, e in zip(oof, examples) for s, t in group_scores(p, e.weak) if t])
    triage = sensitivity_threshold(positive_groups, 0.85)
    assert np.mean(positive_groups >= triage) >= 0.85 and np.mean(positive_groups > triage) < 0.85
    if triage < points["station"]["threshold"]:  # triage is kept only where it flags more than the station point
        assert points["triage"]["threshold"] == triage
    else:
        assert "triage" not in points and "no triage point" in points["station"]["note"]


def test_the_ensemble_is_the_mean_of_its_members_probabilities(fitted):
    cases, f = fitted
    examples = prepare(cases[:4], TINY["training"])
    got = predict(f.model, examples, TINY_SETTINGS)
    each = [predict(m, examples, TINY_SETTINGS) for m in f.model.members]
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, np.mean([e[k] for e in each], axis=0), rtol=1e-5, atol=1e-9)
    a, b = (m.state_dict() for m in f.model.members)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two members, two different networks


def test_cross_fitting_is_deterministic_and_resumable(fitted, tmp_path):
    cases, f = fitted
    again = fit(cases, _cfg(2), out_dir=tmp_path / "run")
    sa, sb = f.model.state_dict(), again.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (tmp_path / "run" / "member_0" / "checkpoint.pt").is_file() and (tmp_path / "run" / "member_1" / "checkpoint.pt").is_file()
    resumed = fit(cases, _cfg(2), out_dir=tmp_path / "run", resume=True)
    assert resumed.threshold == f.threshold and all(torch.equal(resumed.model.state_dict()[k], sa[k]) for k in sa)


def test_one_fold_is_the_single_network_recipe():
    cases = fake_cases(16, seed=5)
    f = fit(cases, _cfg(1))
    assert len(f.members) == 1 and f.train_cases + f.validation_cases == 16 and not isinstance(f.model, StationEnsemble)
    assert 0.0 <= f.operating["validation_group_auroc"] <= 1.0


def test_a_cohort_smaller_than_the_folds_trains_one_network():  # a MONAI Label retraining on a few reviewed cases
    few = fit(fake_cases(3, seed=5), _cfg(4))
    assert len(few.members) == 1 and not isinstance(few.model, StationEnsemble)


def test_an_exported_ensemble_gives_the_training_probabilities(fitted, tmp_path):
    cases, f = fitted
    meta = {"name": "tiny-ens", "version": "0", "kind": "test", "training_data": "synthetic (test)", "threshold": f.threshold,
            "patch": TINY["patch"], "training": TINY["training"]}
    path = export_torchscript(f.model, meta, tmp_path, TINY_SETTINGS)
    module, _ = load_torchscript(path)
    from nstage.analysis.classifier.batch import slot_batch

    examples = prepare(cases[:3], TINY["training"])
    want = predict(f.model, examples, TINY_SETTINGS)
    for e, w in zip(examples, want):
        x = [torch.from_numpy(a) for a in slot_batch([e.inputs], TINY_SETTINGS).as_tuple()]
        with torch.no_grad():
            got = torch.sigmoid(module(*x))[0].numpy()[e.inputs.labels - 1]
        np.testing.assert_allclose(got, w, atol=1e-5)


def test_train_command_exports_an_ensemble_with_its_record_and_evaluate_tests_it(tmp_path):
    root = tmp_path / "tiny"
    write_fake_cohort(root, fake_cases(16, seed=5, root=root))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(_cfg(2)))
    summary = train_command([root], "truth", tmp_path / "ck", tmp_path / "models", cfg, None, False, False, 1, None)
    assert summary["ensemble_members"] == 2 and len(summary["members"]) == 2 and "best_epoch" not in summary
    meta = json.loads((tmp_path / "models" / "station_cnn" / "metadata.json").read_text())
    assert meta["kind"].startswith("cross-fitted ensemble of 2: weakly supervised")
    assert meta["ensemble"]["members"] == 2 and meta["ensemble"]["seed"] == [3, 4]
    assert meta["threshold"] == summary["threshold"] and meta["operating_point"]["validation_cases"] == 16
    single = new_model(TINY)
    assert sum(p.numel() for p in single.parameters()) * 2 == sum(
        v.numel() for k, v in load_torchscript(tmp_path / "models" / "station_cnn" / "model.ts")[0].state_dict().items()
        if not k.endswith("calibration"))
    # the held-out test of the exported ensemble, with the supervised bound trained by the same recipe
    from nstage.training.workflow import evaluate_command

    test = tmp_path / "test"
    write_fake_cohort(test, fake_cases(8, seed=9, root=test))
    report = evaluate_command([test], "truth", tmp_path / "report", cfg, None, 1, None, tmp_path / "models", [root], "truth", None)
    assert report["model"]["kind"].startswith("cross-fitted ensemble of 2")
    assert {"weak", "supervised", "suvmax", "combined"} <= set(report["methods"])
    assert json.loads((tmp_path / "report" / "evaluation.json").read_text())["supervised"]["members"] == 2
