"""The server's step after FedAvg's mean (nstage.training.federated.server_optimizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nstage import paths
from nstage.errors import InputError
from nstage.training.federated.server import FederatedRun
from nstage.training.federated.server_optimizer import ServerOptimizer
from nstage.training.federated.settings import FederatedSettings, federated_settings
from tests.training.test_classifier_training import TINY


def _w(x: float) -> dict[str, np.ndarray]:
    return {"w": np.full(3, x, np.float32), "steps": np.array([7], np.int64)}


def test_lr_1_without_momentum_is_the_mean_itself():
    opt = ServerOptimizer()
    mean = _w(0.3)
    assert opt.step(0, _w(1.0), mean) is mean  # FedAvg: no optimiser runs


def test_momentum_carries_the_earlier_rounds_change_forward():
    opt = ServerOptimizer(lr=1.0, momentum=0.5)
    first = opt.step(0, _w(1.0), _w(0.8))  # v = 0.2: 1.0 - 0.2
    np.testing.assert_allclose(first["w"], 0.8, rtol=1e-6)
    second = opt.step(0, first, _w(0.7))  # v = 0.5 * 0.2 + 0.1 = 0.2: 0.8 - 0.2
    np.testing.assert_allclose(second["w"], 0.6, rtol=1e-6)
    assert second["w"].dtype == np.float32 and second["steps"].tolist() == [7]  # other types: the mean's
    other = opt.step(1, _w(1.0), _w(0.8))  # each member has its own momentum
    np.testing.assert_allclose(other["w"], 0.8, rtol=1e-6)


def test_server_lr_scales_the_step():
    out = ServerOptimizer(lr=2.0).step(0, _w(1.0), _w(0.9))
    np.testing.assert_allclose(out["w"], 0.8, rtol=1e-6)


def test_the_server_optimizer_is_read_from_the_settings_and_checked(tmp_path):
    s = federated_settings()
    assert (s.server_lr, s.server_momentum, s.aggregation) == (1.0, 0.0, "FedAvg")  # shipped: FedAvg
    raw = json.loads((paths.config_dir() / "federated.json").read_text())
    raw["server_optimizer"].update({"lr": 1.0, "momentum": 0.5})
    (tmp_path / "f.json").write_text(json.dumps(raw))
    s = federated_settings(tmp_path / "f.json")
    assert s.server_momentum == 0.5 and "momentum 0.5" in s.aggregation
    assert FederatedSettings.from_dict(s.as_dict()) == s  # what the job carries to the server
    raw["server_optimizer"]["momentum"] = 1.0
    (tmp_path / "f.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="server_optimizer.momentum"):
        federated_settings(tmp_path / "f.json")


def _round(run: FederatedRun, shift: float) -> None:
    """Two sites that both moved every weight of every member by `shift` (records as a site sends them)."""
    states = [[{k: (v + shift if np.issubdtype(v.dtype, np.floating) else v) for k, v in w.items()} for w in run.weights] for _ in range(2)]
    record = {"train_cases": 5, "steps": 1, "train_loss_sum": 0.5, "validation": {"loss": 1.0, "n": 2}}
    run.take_round(len(run.members[0].history) + 1, states, [[dict(record) for _ in run.members] for _ in range(2)])


def test_the_server_steps_with_momentum_between_rounds_and_fedavg_without():
    runs = {m: FederatedRun(TINY, FederatedSettings(server_momentum=m)) for m in (0.0, 0.5)}
    start = {m: {k: v.copy() for k, v in r.weights[0].items()} for m, r in runs.items()}
    for r in runs.values():
        _round(r, 0.01)
        _round(r, 0.01)
    name = next(k for k, v in start[0.0].items() if np.issubdtype(v.dtype, np.floating) and v.size > 1)
    moved = {m: float(np.mean(r.weights[0][name] - start[m][name])) for m, r in runs.items()}
    assert moved[0.0] == pytest.approx(0.02, abs=1e-6)  # FedAvg: the mean of the sites, round after round
    assert moved[0.5] == pytest.approx(0.01 + 0.015, abs=1e-6)  # the second round carries half the first round's change
    assert runs[0.5].members[0].pending["weights"] is runs[0.5].weights[0]  # the best round keeps what the server sent
