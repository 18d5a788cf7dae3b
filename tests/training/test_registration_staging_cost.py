"""bench.stationmap.registration_staging_cost: which patients the registered station maps stage right or wrong."""

from __future__ import annotations

from bench.stationmap.registration_staging_cost import flips


def test_flips_name_the_patients_each_map_alone_stages_right():
    truth = ["N0", "N1", "N2", "N3", "N2"]
    with_truth_maps = ["N0", "N1", "N1", "N3", "N3"]
    with_registered = ["N1", "N1", "N2", "N3", "N0"]
    assert flips(truth, with_truth_maps, with_registered) == {"lost_by_registration": [0], "gained_by_registration": [2]}
    assert flips(truth, truth, truth) == {"lost_by_registration": [], "gained_by_registration": []}
