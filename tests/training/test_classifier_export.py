"""TorchScript export gives the eager network's outputs; the exported model in the pipeline's slot gives the
probabilities of the training code on the same study (to 1e-5); load_classifier picks the CNN when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nstage.analysis.classifier.batch import slot_batch
from nstage.analysis.classifier.export import example_inputs, export_torchscript, load_torchscript
from nstage.analysis.classifier.inputs import station_inputs
from nstage.analysis.classifier.model import StationEnsemble
from nstage.analysis.classifier.slot import SuvmaxSlotClassifier, load_classifier
from nstage.analysis.classifier.station_case import StationCase
from nstage.analysis.measure import station_uptake
from nstage.analysis.nodes import Node, StationNodes
from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.stations import load_stations
from nstage.training.cache import CachedCase
from nstage.training.cohort import CohortCase
from nstage.training.train import new_model, predict, prepare
from tests.training.test_classifier_training import TINY, TINY_SETTINGS


def _export(models_dir, threshold=0.5, members=1):
    nets = []
    for k in range(members):
        torch.manual_seed(k)
        net = new_model(TINY).eval()
        with torch.no_grad():  # a calibration other than identity must travel with the model
            net.calibration.copy_(torch.tensor([0.8 + 0.1 * k, -0.3]))
        nets.append(net)
    model = nets[0] if members == 1 else StationEnsemble(nets).eval()
    meta = {"name": "tiny-test", "version": "0", "kind": "test", "training_data": "synthetic (test)", "threshold": threshold,
            "patch": TINY["patch"], "training": TINY["training"]}
    return model, export_torchscript(model, meta, models_dir, TINY_SETTINGS)


def test_torchscript_export_and_load_give_same_outputs(tmp_path):
    model, path = _export(tmp_path)
    module, meta = load_torchscript(path)
    assert meta["threshold"] == 0.5 and meta["patch"]["node"]["size_voxels"] == 10
    torch.manual_seed(1)
    x = [torch.rand_like(t) for t in example_inputs(TINY_SETTINGS, batch=3)]
    x[4] = (x[4] > 0.2).float()  # some empty station slots
    with torch.no_grad():
        assert torch.allclose(module(*x), model(*x), atol=1e-5)
    assert path.stat().st_size < 50e6


def test_a_model_of_other_inputs_is_refused(tmp_path):
    _, path = _export(tmp_path)
    extra = {"metadata.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    torch.jit.save(module, str(path), _extra_files={"metadata.json": extra["metadata.json"].replace(b'"node_suv_max"', b'"other"')})
    with pytest.raises(InputError, match="other inputs"):
        load_torchscript(path)


def _station_case() -> StationCase:
    grid = Grid((30, 40, 40), (3.0, 3.0, 4.0), (-60.0, -60.0, -100.0))
    hu = np.full(grid.shape, 30.0, np.float32)
    labels = np.zeros(grid.shape, np.uint8)
    labels[5:12, 5:15, 5:15] = 7
    labels[15:25, 20:30, 20:35] = 10
    suv = np.ones(grid.shape, np.float32)
    suv[20, 25, 27] = 6.0  # a hot node in station 10
    names = {s.label: s.station for s in load_stations()}
    uptake = {names[k]: v for k, v in station_uptake(suv, grid, labels, grid).items()}
    centre = tuple(float(v) for v in grid.index_to_lps(np.array([27.0, 25.0, 20.0])))
    node = Node(centre, 9.0, 12.0, 0.4, 35.0, 6.0, 4.0, 3.0, 0.5, False, False, False, 5, "ct")
    return StationCase(hu, grid, suv, grid, labels, uptake, {names[10]: StationNodes(node, (node,), 1)}, 2.0, 12.0, "R")


def test_node_patch_is_centred_on_the_index_node():
    case = _station_case()
    x = station_inputs(case, TINY_SETTINGS)
    s = list(x.labels).index(10)
    c = TINY_SETTINGS.node.cache_size
    k, j, i = np.unravel_index(np.argmax(x.node[s, 1]), x.node[s, 1].shape)
    assert abs(k - (c - 1) / 2) <= 1 and abs(j - (c - 1) / 2) <= 1 and abs(i - (c - 1) / 2) <= 1
    assert x.features.shape == (2, len(x.features[0])) and x.features[s, 7] == 1.0  # node_found


@pytest.mark.parametrize("members", [1, 2])  # one network, or a cross-fitted ensemble as shipped
def test_exported_model_in_the_slot_gives_the_training_probabilities(tmp_path, members):
    model, _ = _export(tmp_path / "models", threshold=0.0, members=members)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(load_classifier(empty), SuvmaxSlotClassifier)
    clf = load_classifier(tmp_path / "models")
    assert clf.description["name"] == "tiny-test" and clf.description["training_data"].startswith("synthetic")
    assert load_classifier(tmp_path / "models") is clf  # loaded once per process
    case = _station_case()
    calls = clf.classify(case)
    assert set(calls) == set(case.uptake) and len(calls) == 2
    assert all(0.0 <= c.probability <= 1.0 and c.malignant for c in calls.values())  # threshold 0: all positive
    got = clf.probabilities(case)
    x = station_inputs(case, TINY_SETTINGS)
    cohort = CohortCase("c", "case_0000", tmp_path, "R", "N1", None, None)
    cached = CachedCase(cohort, x, dict(case.uptake))
    want = predict(model, prepare([cached], TINY["training"]), TINY_SETTINGS)[0]
    assert sorted(got) == list(x.labels)
    np.testing.assert_allclose([got[int(lab)] for lab in x.labels], want, atol=1e-5)
    assert slot_batch([x], TINY_SETTINGS).present.sum() == 2
