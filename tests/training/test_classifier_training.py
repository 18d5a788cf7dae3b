"""Training: deterministic with a seed, resumable from its checkpoint exactly, learns a hot-node signal,
and runs under torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.nrules import stage
from nstage.stations import load_stations
from nstage.training.cache import CachedCase, load_cached
from nstage.training.cohort import CohortCase
from nstage.training.train import train

REPO = Path(__file__).resolve().parents[2]
NAMES = [s.station for s in load_stations()]
TINY = {
    "patch": {"spacing_mm": 4.0, "cache_size_voxels": 20, "size_voxels": 16, "ct_window_hu": [-200, 400], "suv_range": [0, 10],
              "channels": ["ct", "suv", "mask"]},
    "model": {"name": "tiny-test", "version": "0", "channels": [4, 8], "embedding_dim": 2, "dropout": 0.1},
    "training": {"seed": 3, "epochs": 2, "batch_cases": 4, "lr": 0.003, "weight_decay": 0.0, "validation_fraction": 0.25,
                 "class_balance": True, "count_constraint": False, "threshold": "validation", "rules": "tnm",
                 "augment": {"max_shift_voxels": 2, "intensity_scale": 0.05, "intensity_shift": 0.02}},
    "evaluation": {"folds": 2, "bootstrap": 20, "seed": 0},
}
TINY_SETTINGS = PatchSettings.from_dict(TINY["patch"])


def fake_patches(positive: np.ndarray, rng: np.random.Generator, d: int = 20) -> np.ndarray:
    """(S, 3, d, d, d) patches: noisy CT, low SUV, a central mask; positive stations hold a hot blob."""
    s = positive.size
    x = np.zeros((s, 3, d, d, d), np.float32)
    x[:, 0] = 0.4 + 0.05 * rng.standard_normal((s, d, d, d))
    x[:, 1] = 0.1 + 0.02 * rng.standard_normal((s, d, d, d))
    c = d // 2
    x[:, 2, c - 5:c + 5, c - 5:c + 5, c - 5:c + 5] = 1.0
    for n in np.flatnonzero(positive):
        k, j, i = rng.integers(c - 3, c + 2, size=3)
        x[n, 1, k:k + 2, j:j + 2, i:i + 2] = 0.8
    return x.astype(np.float16)


def fake_cases(n: int, seed: int = 0, root: Path = Path("/nonexistent")) -> list[CachedCase]:
    """Cached cases with station truth, their N stage derived by the rules (tumour side alternating)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n):
        side = "RL"[c % 2]
        positive = (rng.random(len(NAMES)) < [0.0, 0.1, 0.3][c % 3]).astype(int)
        truth = {s: bool(v) for s, v in zip(NAMES, positive)}
        ns = stage([s for s, v in truth.items() if v], side)
        case = CohortCase(root.name or "cohort", f"case_{c:04d}", root / f"case_{c:04d}" / "dicom", side, ns.tnm8, ns.tnm9, truth)
        out.append(CachedCase(case, np.arange(1, len(NAMES) + 1), fake_patches(positive, rng),
                              (1.0 + 4.0 * positive + rng.random(len(NAMES))).astype(np.float32), 1.5))
    return out


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_and_other_seed_differs():
    cases = fake_cases(12)
    a = train(cases[:9], cases[9:], TINY, epochs=2)
    b = train(cases[:9], cases[9:], TINY, epochs=2)
    assert _same(_weights(a.model), _weights(b.model))
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


def write_fake_cohort(root: Path, cases: list[CachedCase]) -> None:
    """A cohort folder (CSV, truth.json, empty study folders) whose patch cache is already filled."""
    cache = root / ".nstage_cache" / f"patches-truth-{TINY_SETTINGS.key()}"
    cache.mkdir(parents=True)
    rows = ["case,tumour_side,n_tnm8,n_tnm9"]
    for c in cases:
        (root / c.case.case / "dicom").mkdir(parents=True)
        (root / c.case.case / "truth.json").write_text(json.dumps({"stations": {s: {"malignant": v} for s, v in c.case.station_truth.items()}}))
        rows.append(f"{c.case.case},{c.case.tumour_side},{c.case.n_tnm8},{c.case.n_tnm9}")
        uptake = {str(int(lab)): {"label": int(lab), "volume_ml": 10.0, "suv_max": float(m), "suv_mean": 0.6 * float(m),
                                  "suv_peak": 0.8 * float(m), "hottest_point_lps": [0.0, 0.0, 0.0]} for lab, m in zip(c.labels, c.suv_max)}
        np.savez(cache / f"{c.case.case}.npz", labels=c.labels, patches=c.patches, suv_max=c.suv_max, blood_pool_suv=np.array(1.5),
                 uptake=np.array(json.dumps(uptake)))
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")


def test_cache_files_of_an_older_format_count_as_not_cached(tmp_path):
    """A patch file without the station uptake figures (older version) is skipped, not loaded half-empty."""
    root = tmp_path / "tiny"
    cases = fake_cases(3, root=root)
    write_fake_cohort(root, cases)
    cache = root / ".nstage_cache" / f"patches-truth-{TINY_SETTINGS.key()}"
    old = cases[1]
    np.savez(cache / f"{old.case.case}.npz", labels=old.labels, patches=old.patches, suv_max=old.suv_max, blood_pool_suv=np.array(1.5))
    loaded = load_cached([c.case for c in cases], "truth", TINY_SETTINGS)
    assert [c.case.case for c in loaded] == [cases[0].case.case, cases[2].case.case]
    assert set(loaded[0].uptake) == set(NAMES) and loaded[0].uptake["4R"].suv_max == pytest.approx(float(cases[0].suv_max[NAMES.index("4R")]))


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path):
    root = tmp_path / "tiny"
    write_fake_cohort(root, fake_cases(16))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nstage.cli",
           "train", "--cohort", str(root), "--stations", "truth", "--config", str(cfg), "--out", str(tmp_path / "ck"),
           "--export", str(tmp_path / "models"), "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ck" / "training.json").read_text())
    assert summary["world_size"] == 2 and len(summary["history"]) == 2
    assert (tmp_path / "models" / "station_cnn" / "model.ts").is_file()
