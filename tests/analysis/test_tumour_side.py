"""The tumour side found on PET/CT agrees with the truth on a synthetic cohort (>= 98 %)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import ndimage

from nstage.analysis.config import analysis_config
from nstage.analysis.tumour_side import find_tumour_side
from nstage.geometry import Grid


@pytest.mark.slow
def test_tumour_side_on_a_synthetic_cohort(rendered_cohort) -> None:
    correct = [c.found.side == c.true_side for c in rendered_cohort]
    wrong = [(c.index, c.true_side, c.found.side, c.found.reasons) for c in rendered_cohort if c.found.side != c.true_side]
    assert np.mean(correct) >= 0.98, wrong


def test_no_lungs_means_no_side() -> None:
    g = Grid((20, 40, 40), (4.0, 4.0, 4.0), (-80.0, -80.0, -40.0))
    hu = np.full(g.shape, 40.0, np.float32)  # all soft tissue: an abdomen-like block
    result = find_tumour_side(hu, g, np.ones(g.shape, np.float32), g, np.zeros(g.shape, np.uint8))
    assert result.side is None and result.source == "not found"
    assert "no lungs" in result.reasons[0]


def _chest(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """A body of soft tissue with two air-filled lungs that run up to the top slice, and a hot lesion in the right lung."""
    x, y, z = (c.reshape(s) for c, s in zip(grid.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    hu = np.full(grid.shape, -1000.0, np.float32)
    hu[np.broadcast_to((x / 150.0) ** 2 + (y / 110.0) ** 2 <= 1.0, grid.shape)] = 40.0
    for cx in (-70.0, 70.0):  # LPS: the right lung at -x
        hu[np.broadcast_to(((x - cx) / 50.0) ** 2 + (y / 70.0) ** 2 <= 1.0, grid.shape)] = -850.0
    lesion = ((x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 15.0**2
    hu[lesion] = 30.0
    suv = np.where(lesion, 8.0, 0.8).astype(np.float32)
    return hu, suv


def test_pet_field_of_view_beyond_the_ct_keeps_the_lungs() -> None:
    # The PET reaches a slice above the CT and wider than it: there the CT is unknown, not air. Read
    # as air, that slice joined the lungs to the air outside the body and the side was lost (issue 42:
    # "no lungs found" on studies whose registration found the lungs).
    ct_grid = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    pet_grid = Grid((38, 100, 100), (4.0, 4.0, 3.3), (-198.0, -198.0, -62.0))
    hu, _ = _chest(ct_grid)
    _, suv = _chest(pet_grid)
    assert ct_grid.index_to_lps(np.array([0.0, 0.0, 39.0]))[2] < pet_grid.index_to_lps(np.array([0.0, 0.0, 37.0]))[2]
    result = find_tumour_side(hu, ct_grid, suv, pet_grid, np.zeros(ct_grid.shape, np.uint8))
    assert result.side == "R" and result.source == "auto", result.reasons
    assert result.primary is not None and result.primary.suv_max == pytest.approx(8.0)


def test_a_hot_heart_wall_reaching_into_the_lung_envelope_is_not_a_lesion(monkeypatch) -> None:
    # The myocardium takes up FDG. Where the left lung wraps the heart, the closed lung envelope takes
    # in slivers of the heart wall: as hot as the tumour, they left the side undecided (issue 42, two
    # of 87 fresh small studies). The heart lies mostly outside the envelope, so its slivers are no lesion.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    x, y, z = (c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    heart = np.broadcast_to(((x - 15.0) / 35.0) ** 2 + ((y + 55.0) / 30.0) ** 2 <= 1.0, g.shape) & (np.abs(z) <= 30.0)
    hu[heart] = 40.0
    suv[heart] = 8.0
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert result.side == "R", result.reasons
    assert all(l.side == "R" for l in result.candidates), result.candidates
    # without the rule the slivers are lesions of the left lung, as hot as the tumour; the side still holds because
    # a lesion of the lung itself comes before the lung-side edge of a hot region outside it
    cfg = copy.deepcopy(analysis_config())
    cfg["tumour_side"]["organ_wall_max_ml"] = 0.0
    monkeypatch.setattr("nstage.analysis.tumour_side.analysis_config", lambda: cfg)
    without = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    slivers = [l for l in without.candidates if l.side == "L" and l.volume_ml < 2.0 and l.suv_max == pytest.approx(8.0)]
    assert slivers, without.candidates
    assert without.side == "R" and without.primary is not None and without.primary.volume_ml > 10.0
    # the CT shows the difference: muscle around the slivers as well as lung, only lung around the tumour
    assert all(l.lung_contact < 0.6 for l in slivers) and without.primary.lung_contact > 0.95, without.candidates


def test_a_lesion_of_the_lung_comes_before_the_edge_of_a_hot_node_outside_it() -> None:
    # A hot node just outside the registered stations, against the mediastinal side of the lung: the closed envelope
    # takes in its edge. Hotter than a moderately avid primary inside the lung, it took the side (issue 42, fresh
    # small study 109 of seed 919191: a 0.6 ml piece of SUVmax 10.5 against a 37 mm primary of SUVmax 7.0).
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    suv[:] = np.where(suv > 1.0, 0.8, suv)
    x, y, z = (c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    primary = np.broadcast_to(((x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 15.0**2, g.shape)
    hu[primary], suv[primary] = 30.0, 6.0
    node = np.broadcast_to(((x - 20.0) ** 2 + (y - 10.0) ** 2 + (z + 10.0) ** 2) <= 8.0**2, g.shape)  # beside the left lung's medial edge
    hu[node], suv[node] = 40.0, 12.0
    suv = ndimage.gaussian_filter(suv, (2.5 / 3.0, 2.5 / 3.5, 2.5 / 3.5)).astype(np.float32)
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert any(l.side == "L" and l.suv_max > result.primary.suv_max for l in result.candidates), result.candidates
    assert result.side == "R", result.reasons


def test_a_tumour_bulging_out_of_the_lung_envelope_is_found(monkeypatch) -> None:
    # A mass on the lung's border is soft tissue, not air: most of it lies outside the closed lung envelope and only
    # its PET edge inside. That sliver is no heart wall: the hot region outside is tumour-sized, not an organ
    # (issue 42: 5 of 181 studies lost their side to the organ-wall rule before it weighed the outside part).
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    suv[:] = np.where(suv > 1.0, 0.8, suv)  # no lesion inside the right lung
    x, y, z = (c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    mass = ((x - 115.0) ** 2 + y**2 + (z - 10.0) ** 2) <= 20.0**2  # on the left lung's lateral border
    hu[mass] = 35.0
    suv[mass] = 4.0
    suv = ndimage.gaussian_filter(suv, (2.5 / 3.0, 2.5 / 3.5, 2.5 / 3.5)).astype(np.float32)  # the PET's blur
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert result.side == "L" and result.source == "auto", result.reasons
    assert result.primary is not None and result.primary.volume_ml < 2.0  # a sliver inside the envelope
    # weighed as an organ (any size outside), the sliver is dropped and the side lost
    cfg = copy.deepcopy(analysis_config())
    cfg["tumour_side"]["organ_min_ml"] = 0.0
    monkeypatch.setattr("nstage.analysis.tumour_side.analysis_config", lambda: cfg)
    assert find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8)).side is None


def test_a_faint_primary_is_measured_at_half_its_suvmax(monkeypatch) -> None:
    # A small, faint primary: a couple of voxels reach the avidity threshold, its edge at half its SUVmax holds
    # several millilitres. A lone voxel at the threshold in the lung (noise) is no lesion.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    x, y, z = (c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    suv[:] = np.where(suv > 1.0, 0.5, suv)
    r2 = (x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2
    suv = np.where(r2 <= 9.0**2, np.maximum(suv, 2.3 * np.exp(-r2 / (2 * 8.0**2))), suv).astype(np.float32)
    hot = np.unravel_index(np.argmax(np.where(r2 <= 9.0**2, suv, 0)), g.shape)
    suv[hot] = 2.6  # the one voxel above 2.5
    assert (suv >= 2.5).sum() * g.voxel_volume_ml < 0.3
    noise = (20, 48, 66)  # a lone voxel in the left lung
    assert np.broadcast_to((x - 70.0) ** 2 + y**2 <= 40.0**2, g.shape)[noise]
    suv[noise] = 2.7
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert result.side == "R", result.reasons
    assert all(l.side == "R" for l in result.candidates), result.candidates
    assert result.primary is not None and result.primary.volume_ml >= 0.3
    # measured above the avidity threshold alone (its SUVmax), it is too small to count and the side is lost
    cfg = copy.deepcopy(analysis_config())
    cfg["tumour_side"]["lesion_edge_fraction"] = 1.0
    monkeypatch.setattr("nstage.analysis.tumour_side.analysis_config", lambda: cfg)
    assert find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8)).side is None


def test_spill_from_an_organ_at_the_lung_base_is_no_faint_lesion() -> None:
    # The liver dome under the right lung: the PET's blur spills its uptake into the lung's lowest slice, and one
    # noisy voxel there reaches the avidity threshold. Measured at half its SUVmax inside the lung envelope it has
    # millilitres, like a faint primary; followed outside the envelope it runs into the liver. Taken for a lesion it
    # left a study with a real primary in the other lung undecided (issue 42, test cohort study 6).
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    x, y, z = (c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))
    suv[:] = np.where(suv > 1.0, 0.5, suv)
    body = np.broadcast_to((x / 150.0) ** 2 + (y / 110.0) ** 2 <= 1.0, g.shape)
    liver = body & np.broadcast_to((z <= -30.0) & (x < 0), g.shape)
    hu[liver], suv[liver] = 50.0, 3.0
    primary = np.broadcast_to(((x - 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 9.0**2, g.shape)
    hu[primary], suv[primary] = 30.0, 3.6
    suv = ndimage.gaussian_filter(suv, (3.4 / 3.0, 3.4 / 3.5, 3.4 / 3.5)).astype(np.float32)
    spill = (int(np.argmin(np.abs(z.ravel() + 27.0))), int(np.argmin(np.abs(y.ravel()))), int(np.argmin(np.abs(x.ravel() + 70.0))))
    assert hu[spill] < -500 and suv[spill] < 2.5
    suv[spill] = 2.7
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert result.side == "L", result.reasons
    assert [l.side for l in result.candidates] == ["L"], result.candidates


def _axes(g: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(c.reshape(s) for c, s in zip(g.axis_coordinates(), [(1, 1, -1), (1, -1, 1), (-1, 1, 1)]))


def test_the_edge_of_a_hot_node_mostly_in_the_stations_margin_comes_after_the_lungs_lesion(monkeypatch) -> None:
    # A hot node the registered station covers all but its far edge: that edge reaches into the lung beyond the
    # stations' margin and, as hot as the primary, left the side undecided or took it (issue 42: fresh small studies
    # 87 and 143 of seed 919191, reactive and malignant 2R / 4L nodes of SUV 7.6-18 against primaries of 3.5-11).
    # Grown at half its SUVmax through the margin too, its region lies mostly in the stations' margin.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    suv[:] = np.where(suv > 1.0, 0.8, suv)
    x, y, z = _axes(g)
    primary = np.broadcast_to(((x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 15.0**2, g.shape)
    hu[primary], suv[primary] = 30.0, 6.0
    node = np.broadcast_to(((x - 46.0) ** 2 + y**2 + (z + 10.0) ** 2) <= 10.0**2, g.shape)
    hu[node], suv[node] = 40.0, 7.0
    suv = ndimage.gaussian_filter(suv, (2.5 / 3.0, 2.5 / 3.5, 2.5 / 3.5)).astype(np.float32)
    stations = np.broadcast_to((x >= 20.0) & (x <= 48.0) & (np.abs(y) <= 14.0) & (np.abs(z + 10.0) <= 14.0), g.shape).astype(np.uint8)
    result = find_tumour_side(hu, g, suv, g, stations)
    edges = [l for l in result.candidates if l.side == "L"]
    assert edges and all(l.in_lung and l.station_share >= 0.65 and l.suv_max > result.primary.suv_max / 1.3 for l in edges), result.candidates
    assert result.side == "R" and result.primary.station_share < 0.1, result.reasons
    cfg = copy.deepcopy(analysis_config())
    cfg["tumour_side"]["node_edge_min_station_share"] = 1.01  # the rule off: the edge is a lesion of the lung
    monkeypatch.setattr("nstage.analysis.tumour_side.analysis_config", lambda: cfg)
    assert find_tumour_side(hu, g, suv, g, stations).side != "R"


def _heart_and_a_faint_primary(g: Grid) -> tuple[np.ndarray, np.ndarray]:
    """A chest whose lungs end at a diaphragm, a hot heart on it whose upper part the left lung wraps, and a faint
    16 mm primary in the right lung: its SUVmax below 2.5 (and 1.5 x a blood pool of 1.8) but above the blood pool."""
    x, y, z = _axes(g)
    hu = np.full(g.shape, -1000.0, np.float32)
    hu[np.broadcast_to((x / 150.0) ** 2 + (y / 110.0) ** 2 <= 1.0, g.shape)] = 40.0
    for cx in (-70.0, 70.0):
        hu[np.broadcast_to((((x - cx) / 50.0) ** 2 + (y / 70.0) ** 2 <= 1.0) & (z > -30.0), g.shape)] = -850.0
    suv = np.where(hu > -500, 0.8, 0.4).astype(np.float32)
    heart = np.broadcast_to(((x - 35.0) / 40.0) ** 2 + ((y + 40.0) / 32.0) ** 2 + ((z + 35.0) / 35.0) ** 2 <= 1.0, g.shape)
    hu[heart], suv[heart] = 40.0, 8.0
    primary = np.broadcast_to(((x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 8.0**2, g.shape)
    hu[primary], suv[primary] = 30.0, 2.6
    return hu, ndimage.gaussian_filter(suv, (3.0 / 3.0, 3.0 / 3.5, 3.0 / 3.5)).astype(np.float32)


def test_a_faint_primary_above_the_blood_pool_is_read_when_nothing_hotter_has_lung_around_it(monkeypatch) -> None:
    # A primary of generator SUV 3.0 read below 1.5 x the blood pool, the only hot thing elsewhere being the heart's
    # surface in the lung envelope: the side was lost or wrong (issue 42: fresh small studies 134 and 191 of seed
    # 919191; the heart's apex there had 0.05 of lung around it, the primaries 0.73-1.0). Read as a reader reads a
    # nodule (avid above the blood pool, with lung around it), it is found. This toy's lungs wrap its heart more than
    # a real chest's do, so the organ threshold is set between the two here; the bench grounds the shipped one.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _heart_and_a_faint_primary(g)
    pool = 1.8
    x, y, z = _axes(g)
    peak = float(suv[np.broadcast_to(((x + 70.0) ** 2 + y**2 + (z - 20.0) ** 2) <= 10.0**2, g.shape)].max())
    assert pool < peak < 2.5
    cfg = copy.deepcopy(analysis_config())
    cfg["tumour_side"]["organ_max_lung_contact"] = 0.7
    cfg["tumour_side"]["organ_wall_max_ml"] = 0.0  # the heart's slivers stay candidates: the lung around them decides
    monkeypatch.setattr("nstage.analysis.tumour_side.analysis_config", lambda: cfg)
    stations = np.zeros(g.shape, np.uint8)
    result = find_tumour_side(hu, g, suv, g, stations, blood_pool_suv=pool)
    assert result.side == "R" and result.source == "auto", result.reasons
    assert "above the blood pool" in result.reasons[0] and result.primary.suv_max < 1.5 * pool
    assert result.primary.lung_contact >= cfg["tumour_side"]["faint_min_lung_contact"]
    heart = [l for l in result.candidates if l.side == "L"]
    assert heart and all(l.suv_max > 1.5 * pool and l.lung_contact < 0.7 for l in heart), result.candidates
    # with no blood pool there is no reference to read the nodule against: the heart's surface is all there is
    assert find_tumour_side(hu, g, suv, g, stations).side == "L"
    # weighing no lung contact, the heart's surface is a lesion of the lung and no second reading happens
    cfg["tumour_side"]["organ_max_lung_contact"] = 0.0
    assert find_tumour_side(hu, g, suv, g, stations, blood_pool_suv=pool).side == "L"


def test_a_primary_near_the_midline_takes_the_side_of_the_mediastinum_it_lies_beside(monkeypatch) -> None:
    # The right lung is the larger, so the median x of the lung voxels lies inside it. Against that median two
    # near-midline right primaries of 100 unseen small studies (seed 939393, cases 11 and 46) were called left.
    # The midline is the mediastinum: where the fewest lung voxels lie between the lungs.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    x, y, z = _axes(g)
    hu = np.full(g.shape, -1000.0, np.float32)
    hu[np.broadcast_to((x / 160.0) ** 2 + (y / 110.0) ** 2 <= 1.0, g.shape)] = 40.0
    lungs = np.zeros(g.shape, bool)
    for cx, ax in ((-75.0, 60.0), (55.0, 30.0)):
        lungs |= np.broadcast_to(((x - cx) / ax) ** 2 + (y / 70.0) ** 2 <= 1.0, g.shape)
    hu[lungs] = -850.0
    tumour = np.broadcast_to((x + 27.0) ** 2 + y**2 + (z - 10.0) ** 2 <= 7.0**2, g.shape)
    hu[tumour] = 30.0
    suv = ndimage.gaussian_filter(np.where(tumour, 8.0, 0.6), (1.0, 0.8, 0.8)).astype(np.float32)
    assert np.median(np.broadcast_to(x, g.shape)[lungs]) < -27.0  # the tumour lies left of the lungs' median x
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8))
    assert result.side == "R", (result.reasons, result.candidates)
    assert result.primary is not None and result.primary.suv_max > 5.0


def test_a_faint_primary_bulging_out_of_the_lung_outranks_fainter_foci_inside_both_lungs() -> None:
    # A 35 mm pleural-based primary of generator SUV 3.0, read at SUVmax 2.47 (below 2.5), mostly outside the lung
    # envelope with lung around two thirds of it; in the reading at the blood pool (1.49) faint foci inside both lungs
    # (SUVmax 1.5-1.7) came first as the lungs' own lesions and left the side undecided (issue 42: seed 949494 small
    # case_0080, the one miss of 100 studies no rule had seen). In that reading every lesion has lung around it.
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    suv[:] = np.where(suv > 1.0, 0.8, suv)
    x, y, z = _axes(g)
    mass = np.broadcast_to(((x - 112.0) ** 2 + y**2 + (z - 10.0) ** 2) <= 18.0**2, g.shape)  # on the left lung's border
    hu[mass], suv[mass] = 35.0, 3.2
    for fx, s in ((-70.0, 1.75), (70.0, 1.8)):  # faint foci in the posterior lungs, both sides
        suv[np.broadcast_to(((x - fx) ** 2 + (y - 45.0) ** 2 + (z + 20.0) ** 2) <= 7.0**2, g.shape)] = s
    suv = ndimage.gaussian_filter(suv, (2.5 / 3.0, 2.5 / 3.5, 2.5 / 3.5)).astype(np.float32)
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8), blood_pool_suv=1.45)
    assert result.side == "L" and result.faint, result.reasons
    primary = result.primary
    assert primary is not None and not primary.in_lung and primary.suv_max < 2.5 and primary.lung_contact >= 0.6
    foci = [l for l in result.candidates if l.in_lung]
    assert {l.side for l in foci} == {"L", "R"} and all(l.suv_max < primary.suv_max / 1.3 for l in foci), result.candidates


def test_an_undecided_side_says_when_it_came_from_the_reading_at_the_blood_pool() -> None:
    # Two faint foci of like avidity, one in each lung, and nothing hotter: the side stays undecided, and the reason
    # names the second reading (issue 42: the record of seed 949494 small case_0080 before its fix did not say it).
    g = Grid((40, 96, 96), (3.5, 3.5, 3.0), (-166.25, -166.25, -60.0))
    hu, suv = _chest(g)
    suv[:] = np.where(suv > 1.0, 0.8, suv)
    x, y, z = _axes(g)
    for fx, s in ((-70.0, 1.75), (70.0, 1.8)):
        suv[np.broadcast_to(((x - fx) ** 2 + (y - 45.0) ** 2 + (z + 20.0) ** 2) <= 7.0**2, g.shape)] = s
    suv = ndimage.gaussian_filter(suv, (2.5 / 3.0, 2.5 / 3.5, 2.5 / 3.5)).astype(np.float32)
    result = find_tumour_side(hu, g, suv, g, np.zeros(g.shape, np.uint8), blood_pool_suv=1.45)
    assert result.side is None and not result.faint and len(result.candidates) >= 2, result.reasons
    assert "side undecided" in result.reasons[0] and "reading above the blood pool" in result.reasons[0], result.reasons
