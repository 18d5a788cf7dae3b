"""Training: deterministic with a seed, resumable from its checkpoint exactly, learns a hot-node signal
from weak labels, calibrates and sets its threshold on the validation split, and runs under
torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nstage.analysis.classifier.features import PATIENT_FEATURES, STATION_FEATURES
from nstage.analysis.classifier.inputs import StationInputs
from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.measure import StationUptake
from nstage.analysis.nrules import stage
from nstage.errors import InputError
from nstage.stations import load_stations
from nstage.training.cache import CachedCase, _input_file, load_cached
from nstage.training.cohort import CohortCase
from nstage.training.metrics import auroc
from nstage.training.thresholds import specificity_threshold
from nstage.training.train import predict, prepare, train

REPO = Path(__file__).resolve().parents[2]
NAMES = [s.station for s in load_stations()]
TINY = {
    "patch": {"node": {"spacing_mm": 2.0, "cache_size_voxels": 12, "size_voxels": 10},
              "context": {"spacing_mm": 6.0, "cache_size_voxels": 10, "size_voxels": 8},
              "ct_window_hu": [-200, 400], "suv_range": [0, 10], "channels": ["ct", "suv", "mask"]},
    "model": {"name": "tiny-test", "version": "0", "node_channels": [4, 8], "context_channels": [4], "embedding_dim": 2,
              "hidden": 8, "dropout": 0.1, "patient_context": True},
    "training": {"seed": 3, "epochs": 2, "batch_cases": 4, "lr": 0.003, "weight_decay": 0.0, "validation_fraction": 0.25,
                 "class_balance": True, "count_constraint": False, "threshold": "validation", "operating_specificity": 0.9,
                 "operating_points": {"station": {"specificity": 0.9}, "triage": {"sensitivity": 0.85}},
                 "pooling": "max", "reader_lr_factor": 10.0, "rules": "tnm", "augment": {"max_shift_voxels": 1, "intensity_scale": 0.05, "intensity_shift": 0.02}},
    "evaluation": {"folds": 2, "bootstrap": 20, "seed": 0},
}
TINY_SETTINGS = PatchSettings.from_dict(TINY["patch"])


def fake_inputs(positive: np.ndarray, rng: np.random.Generator, feature_signal: float = 4.0) -> StationInputs:
    """Station inputs: noisy CT, low SUV, a central mask; positive stations hold a hot blob in the node patch
    and an SUVmax feature raised by `feature_signal` (over a uniform 0..2 spread)."""
    s = positive.size
    n, m = TINY_SETTINGS.node.cache_size, TINY_SETTINGS.context.cache_size
    node = np.zeros((s, 3, n, n, n), np.float32)
    node[:, 0] = 0.4 + 0.05 * rng.standard_normal((s, n, n, n))
    node[:, 1] = 0.1 + 0.02 * rng.standard_normal((s, n, n, n))
    c = n // 2
    node[:, 2, c - 3:c + 3, c - 3:c + 3, c - 3:c + 3] = 1.0
    for i in np.flatnonzero(positive):
        node[i, 1, c - 2:c + 1, c - 2:c + 1, c - 2:c + 1] = 0.8
    context = np.zeros((s, 3, m, m, m), np.float32)
    context[:, 0] = 0.4 + 0.05 * rng.standard_normal((s, m, m, m))
    feats = rng.normal(0, 0.1, (s, len(STATION_FEATURES))).astype(np.float32)
    suv = 1.0 + feature_signal * positive + 2.0 * rng.random(s)
    feats[:, 0] = np.log1p(suv)
    return StationInputs(np.arange(1, s + 1), node.astype(np.float16), context.astype(np.float16), feats,
                         np.zeros(len(PATIENT_FEATURES), np.float32))


def fake_cases(n: int, seed: int = 0, root: Path = Path("/nonexistent"), feature_signal: float = 4.0) -> list[CachedCase]:
    """Cached cases with station truth, their N stage derived by the rules (tumour side alternating)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n):
        side = "RL"[c % 2]
        positive = (rng.random(len(NAMES)) < [0.0, 0.1, 0.3][c % 3]).astype(int)
        truth = {s: bool(v) for s, v in zip(NAMES, positive)}
        ns = stage([s for s, v in truth.items() if v], side)
        case = CohortCase(root.name or "cohort", f"case_{c:04d}", root / f"case_{c:04d}" / "dicom", side, ns.tnm8, ns.tnm9, truth)
        x = fake_inputs(positive, rng, feature_signal)
        suv = np.expm1(x.features[:, 0])
        uptake = {s: StationUptake(i + 1, 10.0, float(v), 0.6 * float(v), 0.8 * float(v), (0.0, 0.0, 0.0)) for i, (s, v) in enumerate(zip(NAMES, suv))}
        out.append(CachedCase(case, x, uptake, {}, 1.5, 8.0))
    return out


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_and_other_seed_differs():
    cases = fake_cases(12)
    a = train(cases[:9], cases[9:], TINY, epochs=2)
    b = train(cases[:9], cases[9:], TINY, epochs=2)
    assert _same(_weights(a.model), _weights(b.model)) and a.threshold == b.threshold
    other = json.loads(json.dumps(TINY))
    other["training"]["seed"] = 4
    c = train(cases[:9], cases[9:], other, epochs=2)
    assert not _same(_weights(a.model), _weights(c.model))


def test_resume_from_checkpoint_continues_identically(tmp_path):
    cases = fake_cases(12)
    straight = train(cases[:9], cases[9:], TINY, out_dir=tmp_path / "a", epochs=3)
    train(cases[:9], cases[9:], TINY, out_dir=tmp_path / "b", epochs=1)  # "interrupted" after one epoch
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    resumed = train(cases[:9], cases[9:], TINY, out_dir=tmp_path / "b", resume=True, epochs=3)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.best_epoch == straight.best_epoch
    assert _same(_weights(resumed.model), _weights(straight.model))


def test_a_checkpoint_of_other_training_data_is_not_resumed(tmp_path):
    """A cohort re-rendered under the same case names (a generator change) trains afresh, not from the old run."""
    cases = fake_cases(12)
    train(cases[:9], cases[9:], TINY, out_dir=tmp_path / "b", epochs=1)
    rerendered = fake_cases(12, seed=99)
    straight = train(rerendered[:9], rerendered[9:], TINY, epochs=2)
    resumed = train(rerendered[:9], rerendered[9:], TINY, out_dir=tmp_path / "b", resume=True, epochs=2)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert _same(_weights(resumed.model), _weights(straight.model))


def _with_ema(decay: float) -> dict:
    cfg = json.loads(json.dumps(TINY))
    cfg["training"]["ema_decay"] = decay
    return cfg


def test_weight_averaging_keeps_the_averaged_weights_and_leaves_the_optimisation_alone(tmp_path):
    cases = fake_cases(12)
    plain = train(cases[:9], cases[9:], TINY, epochs=1)
    averaged = train(cases[:9], cases[9:], _with_ema(0.9), out_dir=tmp_path, epochs=1)
    assert [h["train_loss"] for h in averaged.history] == [h["train_loss"] for h in plain.history]
    assert averaged.history[0]["val_loss"] != plain.history[0]["val_loss"]  # validation reads the average
    ema = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["ema"]
    kept = _weights(averaged.model)
    assert all(torch.equal(kept[k], ema[f"module.{k}"]) for k in kept if k != "calibration")
    assert not torch.equal(kept["token.0.weight"], _weights(plain.model)["token.0.weight"])


def test_weight_averaging_resumes_identically(tmp_path):
    cases = fake_cases(12)
    cfg = _with_ema(0.9)
    straight = train(cases[:9], cases[9:], cfg, out_dir=tmp_path / "a", epochs=3)
    train(cases[:9], cases[9:], cfg, out_dir=tmp_path / "b", epochs=1)
    resumed = train(cases[:9], cases[9:], cfg, out_dir=tmp_path / "b", resume=True, epochs=3)
    assert resumed.history == straight.history and resumed.best_epoch == straight.best_epoch
    assert _same(_weights(resumed.model), _weights(straight.model))


def test_a_weight_average_decay_outside_0_1_is_refused():
    cases = fake_cases(8)
    with pytest.raises(InputError, match="ema_decay"):
        train(cases[:6], cases[6:], _with_ema(1.0), epochs=1)


def test_weak_training_learns_the_hot_node_patch_beyond_the_uptake_prior():
    """The SUVmax feature (the prior the network starts from) ranks malignant stations only loosely; the node
    patch holds a clear sign. From N-stage group labels alone, training must learn the patch (AUROC on unseen
    cases well above the prior's), and its operating threshold leaves about 90 % of benign stations below."""
    cfg = json.loads(json.dumps(TINY))
    cfg["training"].update({"epochs": 10, "lr": 0.003})
    cases = fake_cases(60, seed=1, feature_signal=0.6)
    res = train(cases[:36], cases[36:48], cfg)
    test = cases[48:]
    probs = predict(res.model, prepare(test, cfg["training"]), TINY_SETTINGS)
    y = np.concatenate([c.truth() for c in test])
    p = np.concatenate(probs)
    prior = auroc(np.concatenate([c.inputs.features[:, 0] for c in test]), y)
    assert prior < 0.8 and auroc(p, y) > prior + 0.1
    assert 0.75 <= float((p[y == 0] < res.threshold).mean()) <= 1.0
    assert res.calibration[0] > 0


def test_specificity_threshold_leaves_the_stated_share_of_negatives_below():
    neg = np.arange(100) / 100.0
    t = specificity_threshold(neg, 0.9)
    assert float((neg < t).mean()) == pytest.approx(0.9) and t > neg[89]
    assert specificity_threshold(np.zeros(0), 0.9) == 0.5


def write_fake_cohort(root: Path, cases: list[CachedCase]) -> None:
    """A cohort folder (CSV, truth.json, empty study folders) whose input cache is already filled."""
    rows = ["case,tumour_side,n_tnm8,n_tnm9"]
    for c in cases:
        (root / c.case.case / "dicom").mkdir(parents=True)
        (root / c.case.case / "truth.json").write_text(json.dumps({"stations": {s: {"malignant": v} for s, v in c.case.station_truth.items()}}))
        rows.append(f"{c.case.case},{c.case.tumour_side},{c.case.n_tnm8},{c.case.n_tnm9}")
        path = _input_file(root / ".nstage_cache", c.case, "truth", TINY_SETTINGS)
        path.parent.mkdir(parents=True, exist_ok=True)
        uptake = {str(u.label): {"label": u.label, "volume_ml": u.volume_ml, "suv_max": u.suv_max, "suv_mean": u.suv_mean,
                                 "suv_peak": u.suv_peak, "hottest_point_lps": list(u.hottest_point_lps)} for u in c.uptake.values()}
        meta = {"version": 2, "uptake": uptake, "nodes": {}, "blood_pool_suv": c.blood_pool_suv, "tumour_suv": c.tumour_suv, "rules": "tnm"}
        x = c.inputs
        np.savez(path, labels=x.labels, node=x.node, context=x.context, features=x.features, patient=x.patient, meta=np.array(json.dumps(meta)))
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")


def test_cache_round_trip_gives_the_same_inputs_and_measurements(tmp_path):
    root = tmp_path / "tiny"
    cases = fake_cases(3, root=root)
    write_fake_cohort(root, cases)
    loaded = load_cached([c.case for c in cases], "truth", TINY_SETTINGS)
    assert [c.case.case for c in loaded] == [c.case.case for c in cases]
    for a, b in zip(loaded, cases):
        np.testing.assert_array_equal(a.inputs.node, b.inputs.node)
        np.testing.assert_array_equal(a.inputs.features, b.inputs.features)
        assert a.uptake["4R"].suv_max == pytest.approx(b.uptake["4R"].suv_max) and a.blood_pool_suv == 1.5
    other = PatchSettings.from_dict({**TINY["patch"], "node": {"spacing_mm": 1.0, "cache_size_voxels": 12, "size_voxels": 10}})
    assert load_cached([c.case for c in cases], "truth", other) == []  # other patch settings: not cached


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path):
    root = tmp_path / "tiny"
    write_fake_cohort(root, fake_cases(16, root=root))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "training": {**TINY["training"], "ensemble_folds": 2}}))  # the shipped recipe's shape
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nstage.cli",
           "train", "--cohort", str(root), "--stations", "truth", "--config", str(cfg), "--out", str(tmp_path / "ck"),
           "--export", str(tmp_path / "models"), "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ck" / "training.json").read_text())
    assert summary["world_size"] == 2 and [len(m["history"]) for m in summary["members"]] == [2, 2]
    assert (tmp_path / "ck" / "member_1" / "checkpoint.pt").is_file()
    assert (tmp_path / "models" / "station_cnn" / "model.ts").is_file()


def test_the_input_cache_is_named_by_the_node_readers_settings(tmp_path, monkeypatch):
    """A node reader with other thresholds reads other nodes: its cache must not be read for this one."""
    import dataclasses

    import nstage.training.cache as cache_module

    case = fake_cases(1, root=tmp_path)[0].case
    before = _input_file(tmp_path, case, "truth", TINY_SETTINGS)
    assert _input_file(tmp_path, case, "truth", TINY_SETTINGS) == before
    changed = dataclasses.replace(cache_module.node_settings(), fat_min_notch_fraction=0.5)
    monkeypatch.setattr(cache_module, "node_settings", lambda: changed)
    assert _input_file(tmp_path, case, "truth", TINY_SETTINGS).parent != before.parent


def test_sensitivity_threshold_keeps_the_stated_share_of_positives_called():
    from nstage.training.operating_points import sensitivity_at, sensitivity_threshold

    pos = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    t = sensitivity_threshold(pos, 0.85)
    assert t == pytest.approx(0.1)  # 9 of 10 at or above it; the next higher (0.2) keeps only 8
    assert sensitivity_at(pos, t) == pytest.approx(0.9)
    assert sensitivity_threshold(pos, 0.8) == pytest.approx(0.2)
    assert sensitivity_threshold(np.zeros(0), 0.85) == 0.5


def test_triage_is_kept_only_below_the_station_point():
    from nstage.training.operating_points import earned

    def point(t: float) -> dict:
        return {"threshold": t, "rule": "r", "validation_sensitivity": 0.9, "sensitivity_of": "N-positive groups"}

    low = earned({"staging": point(0.3), "station": point(0.1), "triage": point(0.05)})
    assert set(low) == {"staging", "station", "triage"} and "note" not in low["station"]
    high = earned({"staging": point(0.3), "station": point(0.03), "triage": point(0.1)})
    assert set(high) == {"staging", "station"} and "no triage point" in high["station"]["note"]
