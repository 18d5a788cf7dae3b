"""The server's step after FedAvg's mean (nstage.training.federated.server_optimizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nstage import paths
from nstage.errors import InputError
from nstage.training.federated.server_optimizer import ServerOptimizer
from nstage.training.federated.settings import FederatedSettings, federated_settings


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
