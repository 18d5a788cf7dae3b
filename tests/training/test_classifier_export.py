"""TorchScript export gives the eager network's outputs; load_classifier picks the CNN when a model is present."""

from __future__ import annotations

import numpy as np
import torch

from nstage.analysis.classifier.export import export_torchscript, load_torchscript
from nstage.analysis.classifier.model import build_model
from nstage.analysis.classifier.slot import SuvmaxSlotClassifier, load_classifier
from nstage.analysis.classifier.station_case import StationCase
from nstage.analysis.measure import station_uptake
from nstage.geometry import Grid
from nstage.stations import load_stations
from tests.training.test_classifier_training import TINY


def _export(models_dir, threshold=0.5):
    torch.manual_seed(0)
    model = build_model(TINY["model"]).eval()
    meta = {"name": "tiny-test", "version": "0", "kind": "test", "training_data": "synthetic (test)", "threshold": threshold,
            "patch": TINY["patch"]}
    return model, export_torchscript(model, meta, models_dir, TINY["patch"]["size_voxels"])


def test_torchscript_export_and_load_give_same_outputs(tmp_path):
    model, path = _export(tmp_path)
    module, meta = load_torchscript(path)
    assert meta["threshold"] == 0.5 and meta["patch"]["size_voxels"] == 16
    x = torch.rand(5, 3, 16, 16, 16)
    st = torch.tensor([0, 3, 7, 16, 2])
    with torch.no_grad():
        assert torch.allclose(module(x, st), model(x, st), atol=1e-5)
    assert path.stat().st_size < 50e6


def _station_case() -> StationCase:
    grid = Grid((30, 40, 40), (3.0, 3.0, 4.0), (-60.0, -60.0, -100.0))
    hu = np.full(grid.shape, 30.0, np.float32)
    labels = np.zeros(grid.shape, np.uint8)
    labels[5:12, 5:15, 5:15] = 7
    labels[15:25, 20:30, 20:35] = 10
    suv = np.ones(grid.shape, np.float32)
    names = {s.label: s.station for s in load_stations()}
    uptake = {names[k]: v for k, v in station_uptake(suv, grid, labels, grid).items()}
    return StationCase(hu, grid, suv, grid, labels, uptake)


def test_load_classifier_picks_cnn_when_present_and_suvmax_slot_otherwise(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(load_classifier(empty), SuvmaxSlotClassifier)
    _export(tmp_path / "models", threshold=0.0)
    clf = load_classifier(tmp_path / "models")
    assert clf.description["name"] == "tiny-test" and clf.description["training_data"].startswith("synthetic")
    assert load_classifier(tmp_path / "models") is clf  # loaded once per process
    case = _station_case()
    calls = clf.classify(case)
    assert set(calls) == set(case.uptake) and len(calls) == 2
    assert all(0.0 <= c.probability <= 1.0 and c.malignant for c in calls.values())  # threshold 0: all positive
