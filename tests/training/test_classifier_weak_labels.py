"""Weak labels (clinical-rules.md section 3): group targets from the N stage, max pooling, unknown groups ignored."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nstage.analysis.nrules import weak_label_groups
from nstage.stations import load_stations
from nstage.training.weak_labels import supervised_loss, weak_loss, weak_targets

STATIONS = [s.station for s in load_stations()]


def _idx(names):
    return sorted(STATIONS.index(s) for s in names)


def test_n2_right_targets_g2_positive_g3_negative_g1_unknown():
    t = weak_targets(STATIONS, "R", "N2")
    groups = weak_label_groups("R")
    got = {tuple(sorted(idx.tolist())): target for idx, target in t.groups}
    assert got == {tuple(_idx(groups["G2"])): 1, tuple(_idx(groups["G3"])): 0}  # G1 (10R, 11R) unknown: absent


def test_unknown_group_gets_no_gradient_and_positive_group_max_pools():
    t = weak_targets(STATIONS, "R", "N2")
    logits = torch.linspace(-2, 2, len(STATIONS), requires_grad=True)
    loss, n = weak_loss(logits, t)
    loss.backward()
    g1 = _idx(weak_label_groups("R")["G1"])
    assert n == 2
    assert torch.all(logits.grad[g1] == 0)  # unknown group ignored
    g2 = _idx(weak_label_groups("R")["G2"])
    top = g2[int(torch.argmax(logits.detach()[g2]))]
    assert logits.grad[top] != 0 and all(logits.grad[i] == 0 for i in g2 if i != top)  # only the max instance
    g3 = _idx(weak_label_groups("R")["G3"])
    expected = F.binary_cross_entropy_with_logits(logits.detach()[g2].max(), torch.tensor(1.0)) + \
        F.binary_cross_entropy_with_logits(logits.detach()[g3].max(), torch.tensor(0.0))
    assert torch.isclose(loss.detach(), expected)


def test_n0_all_groups_negative_and_pos_weight_scales_positive_terms():
    t0 = weak_targets(STATIONS, "L", "N0")
    assert sorted(target for _, target in t0.groups) == [0, 0, 0]
    t1 = weak_targets(STATIONS, "L", "N1")
    logits = torch.zeros(len(STATIONS))
    a, _ = weak_loss(logits, t1, pos_weight=1.0)
    b, _ = weak_loss(logits, t1, pos_weight=3.0)
    ln2 = float(np.log(2))
    assert np.isclose(float(a), 3 * ln2) and np.isclose(float(b), 5 * ln2)  # G1 positive weighted 3x


def test_count_constraint_n2a_penalises_a_second_positive_n2_station():
    t = weak_targets(STATIONS, "R", "N2", "N2a", count_constraint=True)
    g2 = _idx(weak_label_groups("R")["G2"])
    one = torch.full((len(STATIONS),), -4.0)
    one[g2[0]] = 4.0
    two = one.clone()
    two[g2[1]] = 4.0
    assert float(weak_loss(two, t)[0]) > float(weak_loss(one, t)[0]) + 3.0
    assert weak_targets(STATIONS, "R", "N2", "N2a").count is None  # off unless asked


def test_missing_stations_are_skipped_and_supervised_loss_is_station_bce():
    present = ["1R", "7", "10L"]
    t = weak_targets(present, "R", "N3")
    assert [(idx.tolist(), target) for idx, target in t.groups] == [([0, 2], 1)]  # G3 = 1R, 10L; G2/G1 unknown
    loss, n = supervised_loss(torch.zeros(3), np.array([1, 0, 0]))
    assert n == 3 and np.isclose(float(loss), 3 * np.log(2))


def test_lse_and_noisy_or_pooling_reach_every_station_of_a_positive_group():
    t = weak_targets(STATIONS, "R", "N2")
    g2 = _idx(weak_label_groups("R")["G2"])
    for pooling in ("lse", "noisy_or"):
        logits = torch.linspace(-2, 2, len(STATIONS), requires_grad=True)
        loss, n = weak_loss(logits, t, pooling=pooling)
        loss.backward()
        assert n == 2 and all(logits.grad[i] < 0 for i in g2), pooling  # each G2 station pushed up, not only the max
    z = torch.tensor([-3.0, 0.5, -1.0])
    one = weak_targets(["7", "4R", "2R"], "R", "N2")  # one known group (G2), positive
    expected = -torch.log(1 - torch.prod(1 - torch.sigmoid(z)))
    assert torch.isclose(weak_loss(z, one, pooling="noisy_or")[0], expected, atol=1e-5)
    lse = (torch.logsumexp(4.0 * z, 0) - np.log(3)) / 4.0
    assert z.mean() < lse < z.max()
    assert torch.isclose(weak_loss(z, one, pooling="lse")[0], F.binary_cross_entropy_with_logits(lse, torch.tensor(1.0)))
