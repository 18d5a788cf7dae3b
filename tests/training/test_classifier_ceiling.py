"""The ceiling benchmark's building blocks: station features follow the disease model, N-stage scoring follows the rules."""

from __future__ import annotations

import numpy as np

from bench.classifier.classifier_ceiling import N_NODE_FEATURES, PER_NODE, flat_stations, sample_cohort
from nstage.stations import station_names
from nstage.synth.disease import node_config


def test_sampled_features_match_the_disease_truth():
    feats, cats, truth, tumour, sides = sample_cohort(60, seed=5)
    assert feats.shape == (60, len(station_names()), N_NODE_FEATURES) and truth.shape == (60, len(station_names()))
    assert tumour.shape == (60,) and np.all(tumour > 0)
    assert set(sides) <= {"L", "R"} and truth.sum() > 0
    assert np.all(cats.sum(axis=2) == 1)  # one N category per station and patient
    # every malignant station holds a node (its hottest node's uptake is positive), and a malignant node's
    # uptake is at least the disease model's floor (config/synth/nodes.json: low-volume deposits, lognormal minimum)
    m = node_config()["uptake"]["malignant"]
    assert np.all(feats[truth == 1, 0] >= min(m["low_volume_suv"][0], m["min"]))
    # the CT signs of the hottest node are flags, and both kinds of station carry some (no sign is planted in one kind only)
    signs = feats[:, :, 4:PER_NODE]
    assert set(np.unique(signs)) <= {0.0, 1.0}
    assert signs[truth == 0].sum() > 0
    # node count: a station with a hottest node has at least one node
    assert np.all(feats[feats[:, :, 0] > 0][:, 2 * PER_NODE] >= 1)


def test_n_stage_accuracy_counts_patients_whose_stage_changes():
    names = list(station_names())
    truth = np.zeros((2, len(names)), int)
    truth[0, names.index("10R")] = 1  # right tumour, ipsilateral hilar: N1
    stations = flat_stations(truth, ["R", "R"])
    assert stations.n_stage_accuracy(stations.truth.astype(bool)) == 1.0
    calls = stations.truth.astype(bool).copy()
    calls[names.index("4R")] = True  # patient 0: an ipsilateral mediastinal false positive makes N2
    assert stations.n_stage_accuracy(calls) == 0.5
    calls = stations.truth.astype(bool).copy()
    calls[len(names) + names.index("11R")] = True  # patient 1 (N0): a hilar false positive makes N1
    assert stations.n_stage_accuracy(calls) == 0.5


def test_figures_rank_perfect_scores_at_auroc_one():
    names = list(station_names())
    truth = np.zeros((3, len(names)), int)
    truth[1, names.index("7")] = 1
    stations = flat_stations(truth, ["L", "R", "L"])
    fig = stations.figures(stations.truth + np.linspace(0, 0.1, stations.truth.size))
    assert fig["auroc"] == 1.0 and fig["n_stage_accuracy_best_threshold"] == 1.0 and fig["sensitivity_at_specificity_0.90"] == 1.0
