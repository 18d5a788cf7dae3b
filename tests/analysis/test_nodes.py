"""Node reading on a phantom with known nodes: found where they are, measured as drawn, vessels left out, CT signs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from nstage.analysis.nodes import axial_axes, index_node, node_settings, read_nodes, visual_grade
from nstage.geometry import Grid, resample

CT = Grid(shape=(40, 110, 110), spacing=(0.8, 0.8, 2.0), origin=(-44.0, -44.0, -40.0))
PET = Grid(shape=(22, 24, 24), spacing=(4.0, 4.0, 4.0), origin=(-46.0, -46.0, -42.0))
BLOOD_POOL = 1.8
NODES = {  # name: centre (LPS mm), semi-axes (x, y, z) mm, HU, SUV of the node tissue
    "hot": ((-12.0, -10.0, -4.0), (7.0, 5.0, 8.0), 35.0, 8.0),
    "small": ((12.0, -14.0, 10.0), (3.0, 3.0, 4.0), 35.0, 1.0),
    "calcified": ((14.0, 14.0, -10.0), (4.5, 4.5, 5.0), 35.0, 1.2),
    "fatty": ((-14.0, 14.0, 12.0), (6.5, 6.5, 6.0), 35.0, 1.2),
}
VESSEL_X, VESSEL_Y, VESSEL_R = 4.0, 2.0, 6.0


def ellipsoid(centre: tuple[float, float, float], semi: tuple[float, float, float], grid: Grid = CT) -> np.ndarray:
    x, y, z = grid.axis_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return ((xx - centre[0]) / semi[0]) ** 2 + ((yy - centre[1]) / semi[1]) ** 2 + ((zz - centre[2]) / semi[2]) ** 2 <= 1.0


@pytest.fixture(scope="module")
def phantom() -> dict:
    rng = np.random.default_rng(5)
    hu = np.full(CT.shape, -95.0, np.float32)
    x, y, z = CT.axis_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    vessel = (xx - VESSEL_X) ** 2 + (yy - VESSEL_Y) ** 2 <= VESSEL_R**2  # runs through the whole box along z
    hu[vessel] = 40.0
    act = np.full(CT.shape, 0.35, np.float32)
    act[vessel] = BLOOD_POOL
    for name, (c, semi, h, suv) in NODES.items():
        m = ellipsoid(c, semi)
        hu[m], act[m] = h, suv
    hu[ellipsoid(NODES["calcified"][0], (2.5, 2.5, 3.0))] = 650.0
    hu[ellipsoid((NODES["fatty"][0][0] + 2.0, NODES["fatty"][0][1], NODES["fatty"][0][2]), (2.5, 2.5, 3.0))] = -95.0  # fatty hilum
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[(np.abs(xx) < 30) & (np.abs(yy) < 30) & (np.abs(zz) < 24)] = 7
    pet_fine = ndimage.gaussian_filter(act, (6.0 / 2.355 / 2.0, 6.0 / 2.355 / 0.8, 6.0 / 2.355 / 0.8))
    suv = resample(pet_fine, CT, PET, order=1, fill=0.35).astype(np.float32)
    found = read_nodes(hu, CT, suv, PET, stations, {7: "7"}, BLOOD_POOL, 10.0)["7"]
    return {"hu": hu, "suv": suv, "stations": stations, "found": found}


def nearest(found, centre: tuple[float, float, float]):
    return min(found.nodes, key=lambda n: float(np.linalg.norm(np.subtract(n.centre_lps, centre))))


def test_every_node_is_found_where_it_is(phantom: dict) -> None:
    found = phantom["found"]
    for name, (c, *_rest) in NODES.items():
        n = nearest(found, c)
        assert np.linalg.norm(np.subtract(n.centre_lps, c)) < 2.5, name


def test_axes_are_measured_in_the_axial_plane(phantom: dict) -> None:
    hot = nearest(phantom["found"], NODES["hot"][0])
    assert hot.short_axis_mm == pytest.approx(10.0, abs=1.2)
    assert hot.long_axis_mm == pytest.approx(14.0, abs=1.5)
    small = nearest(phantom["found"], NODES["small"][0])
    assert small.short_axis_mm == pytest.approx(6.0, abs=1.2)


def test_the_vessel_is_no_candidate(phantom: dict) -> None:
    for n in phantom["found"].nodes:
        assert np.hypot(n.centre_lps[0] - VESSEL_X, n.centre_lps[1] - VESSEL_Y) > VESSEL_R, n
        assert n.long_axis_mm < 20.0


def test_index_node_is_the_hottest_avid_one(phantom: dict) -> None:
    found = phantom["found"]
    hot = nearest(found, NODES["hot"][0])
    assert found.index_node == hot and found.nodes[0] == hot
    assert hot.visual_grade == 5 and hot.suv_max > 3.0
    assert hot.blood_pool_ratio == pytest.approx(hot.suv_max / BLOOD_POOL)
    assert hot.tumour_ratio == pytest.approx(hot.suv_max / 10.0)


def test_ct_signs(phantom: dict) -> None:
    found = phantom["found"]
    calc, fatty, hot = (nearest(found, NODES[k][0]) for k in ("calcified", "fatty", "hot"))
    assert calc.calcified and not hot.calcified and not fatty.calcified
    assert fatty.fat_containing and not hot.fat_containing
    assert hot.hu_mean == pytest.approx(35.0, abs=10.0)
    assert not hot.low_density_centre


def test_a_low_density_centre_is_seen() -> None:
    hu = np.full(CT.shape, -95.0, np.float32)
    c = (0.0, 0.0, 0.0)
    hu[ellipsoid(c, (9.0, 9.0, 9.0))] = 35.0
    hu[ellipsoid(c, (4.5, 4.5, 5.0))] = 12.0  # necrosis: fluid density, not fat
    stations = np.zeros(CT.shape, np.uint8)
    stations[ellipsoid(c, (20.0, 20.0, 20.0))] = 4
    suv = np.full(PET.shape, 1.0, np.float32)
    n = read_nodes(hu, CT, suv, PET, stations, {4: "4R"}, BLOOD_POOL, None)["4R"].index_node
    assert n is not None and n.low_density_centre and not n.fat_containing and n.tumour_ratio is None


def test_a_node_of_the_neighbouring_station_is_read_there() -> None:
    hu = np.full(CT.shape, -95.0, np.float32)
    hu[ellipsoid((6.0, 0.0, 0.0), (4.0, 4.0, 5.0))] = 35.0  # inside station 2, 2 mm from station 1's border
    x, _, _ = CT.axis_coordinates()
    stations = np.zeros(CT.shape, np.uint8)
    stations[:, :, x < 0] = 1
    stations[:, :, x >= 0] = 2
    stations[:, :, x > 30] = 0
    suv = np.full(PET.shape, 1.0, np.float32)
    found = read_nodes(hu, CT, suv, PET, stations, {1: "A", 2: "B"}, BLOOD_POOL, None)
    assert found["A"].index_node is None and found["B"].index_node is not None


def test_axial_axes_of_an_ellipse() -> None:
    j, i = np.mgrid[-40:41, -40:41] * 0.25
    long_ax, short_ax = axial_axes((i / 8.0) ** 2 + (j / 5.0) ** 2 <= 1.0, (0.25, 0.25))
    assert long_ax == pytest.approx(16.0, abs=0.2) and short_ax == pytest.approx(10.0, abs=0.2)


def test_visual_grade_against_the_blood_pool() -> None:
    s = node_settings()
    assert [visual_grade(v, 2.0, s) for v in (0.5, 1.5, 2.0, 3.0, 5.0)] == [1, 2, 3, 4, 5]
    assert visual_grade(3.0, None, s) is None


def test_index_node_falls_back_to_the_largest() -> None:
    s = node_settings()
    n = read_nodes(np.full(CT.shape, -95.0, np.float32), CT, np.ones(PET.shape, np.float32), PET,
                   np.zeros(CT.shape, np.uint8), {}, BLOOD_POOL, None)
    assert n == {}
    base = dict(centre_lps=(0.0, 0.0, 0.0), long_axis_mm=12.0, volume_ml=0.5, hu_mean=35.0, suv_peak=1.0, blood_pool_ratio=0.6,
                tumour_ratio=None, calcified=False, fat_containing=False, low_density_centre=False, source="ct")
    from nstage.analysis.nodes import Node

    small_hot = Node(short_axis_mm=6.0, suv_max=4.0, visual_grade=4, **base)
    big_cold = Node(short_axis_mm=11.0, suv_max=1.0, visual_grade=2, **base)
    assert index_node([big_cold, small_hot], s) is small_hot
    assert index_node([big_cold, dataclasses.replace(small_hot, visual_grade=3)], s) is big_cold


def test_thick_slices_do_not_shrink_the_axes() -> None:
    """A 12 x 9 mm node centred between two 5 mm slices: the 3-D moments give its widest axial section."""
    from nstage.analysis.nodes import ellipsoid_axial_axes

    grid = Grid(shape=(12, 30, 30), spacing=(1.5, 1.5, 5.0), origin=(-22.0, -22.0, -27.5))
    m = ellipsoid((0.0, 0.0, 0.0), (6.0, 4.5, 7.0), grid)
    long_ax, short_ax = ellipsoid_axial_axes(m, grid.spacing)
    assert long_ax == pytest.approx(12.0, abs=1.0) and short_ax == pytest.approx(9.0, abs=1.0)
    widest = max(axial_axes(sl, (1.5, 1.5))[1] for sl in m)
    assert widest < short_ax  # the nearest slice alone under-reads it


def _heart_phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A large hot organ (the myocardium's uptake, noisy) reaching into a station, and a hot node in the fat beside it."""
    rng = np.random.default_rng(11)
    heart_c, heart_r = (0.0, -60.0, 0.0), 45.0  # its posterior 15 mm lie in the box, its edge in the station
    node_c = (-20.0, 5.0, 0.0)
    hu = np.full(CT.shape, -95.0, np.float32)
    act = np.full(CT.shape, 0.4, np.float32)
    heart = ellipsoid(heart_c, (heart_r,) * 3)
    hu[heart], act[heart] = 40.0, 2.6
    node = ellipsoid(node_c, (4.5, 4.5, 5.0))
    hu[node], act[node] = 35.0, 7.0
    hu = hu + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    fine = ndimage.gaussian_filter(act, (6.0 / 2.355 / 2.0, 6.0 / 2.355 / 0.8, 6.0 / 2.355 / 0.8))
    suv = resample(fine, CT, PET, order=1, fill=0.4).astype(np.float32)
    suv *= rng.normal(1.0, 0.08, suv.shape).astype(np.float32)  # PET noise: local maxima all along the organ's edge
    stations = np.zeros(CT.shape, np.uint8)
    stations[ellipsoid((0.0, 0.0, 0.0), (35.0, 22.0, 30.0))] = 8
    return hu, suv, stations, node_c


def test_the_edge_of_a_hot_organ_is_no_focus_but_a_node_beside_it_is() -> None:
    hu, suv, stations, node_c = _heart_phantom()
    heart_surface_y = -15.0
    found = read_nodes(hu, CT, suv, PET, stations, {8: "8"}, BLOOD_POOL, None)["8"]
    assert any(np.linalg.norm(np.subtract(n.centre_lps, node_c)) < 3.0 for n in found.nodes)
    on_heart = [n for n in found.nodes if n.centre_lps[1] < heart_surface_y + 6.0]
    assert on_heart == [], on_heart
    # without the contrast test the organ's edge gives foci: the phantom does test it
    no_contrast = dataclasses.replace(node_settings(), focus_min_contrast=0.0, max_nodes_per_station=50)
    loose = read_nodes(hu, CT, suv, PET, stations, {8: "8"}, BLOOD_POOL, None, no_contrast)["8"]
    assert any(n.source == "pet" and n.centre_lps[1] < heart_surface_y + 6.0 for n in loose.nodes)


def test_a_fatty_hilum_notch_and_a_small_calcium_focus_are_seen() -> None:
    """As the generator draws them: hilum fat opening to the node's margin (not enclosed), and a calcium
    focus of a few per cent of the node; neither is seen by the enclosed-fat and calcium-fraction rules alone."""
    rng = np.random.default_rng(11)
    hu = np.full(CT.shape, -95.0, np.float32)
    hilum_c, calc_c = (-12.0, 0.0, 0.0), (14.0, 0.0, 0.0)
    hu[ellipsoid(hilum_c, (6.0, 5.0, 6.0))] = 35.0
    hu[ellipsoid((hilum_c[0], hilum_c[1] + 3.6, hilum_c[2]), (3.0, 2.5, 3.0))] = -95.0  # the notch reaches the margin
    hu[ellipsoid(calc_c, (6.0, 5.0, 6.0))] = 35.0
    hu[ellipsoid(calc_c, (1.8, 1.5, 2.0))] = 650.0  # about 3 % of the node
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[ellipsoid((0.0, 0.0, 0.0), (32.0, 20.0, 20.0))] = 7
    suv = np.full(PET.shape, 1.0, np.float32)
    plain = dataclasses.replace(node_settings(), fat_min_notch_fraction=1.0, calcified_min_volume_mm3=1e9)
    for settings, seen in ((node_settings(), True), (plain, False)):
        found = read_nodes(hu, CT, suv, PET, stations, {7: "7"}, BLOOD_POOL, None, settings)["7"]
        hilum, calc = nearest(found, hilum_c), nearest(found, calc_c)
        assert np.linalg.norm(np.subtract(hilum.centre_lps, hilum_c)) < 3.0 and np.linalg.norm(np.subtract(calc.centre_lps, calc_c)) < 2.5
        assert hilum.fat_containing is seen and calc.calcified is seen
        assert not hilum.calcified and not calc.fat_containing


def test_calcium_on_the_border_and_a_notch_in_a_tiny_node_are_no_signs() -> None:
    """Calcium only along the node's outline (a tracheal cartilage ring, a plaque beside it) does not make it
    calcified, and a notch in a node too small for a visible hilum does not make it fatty; the same voxels
    deeper inside, or in a larger node, do."""
    from nstage.analysis.node_signs import ct_signs

    s = node_settings()
    spacing = (0.8, 0.8, 2.0)
    k, j, i = np.mgrid[0:9, 0:24, 0:24]
    x, y, z = (i - 11.5) * 0.8, (j - 11.5) * 0.8, (k - 4) * 2.0
    node = (x / 6.0) ** 2 + (y / 6.0) ** 2 + (z / 7.0) ** 2 <= 1.0
    hu = np.where(node, 35.0, -95.0).astype(np.float32)
    edge = node & ~ndimage.binary_erosion(node, structure=ndimage.generate_binary_structure(3, 1) & np.array([0, 1, 0], bool)[:, None, None])
    plate = edge & (x > 3.0) & (np.abs(z) <= 2.0)  # one voxel thick, on one flank of the outline
    assert 8.0 <= plate.sum() * 1.28 and plate.sum() < 0.1 * node.sum()
    with_plate = np.where(plate, 900.0, hu).astype(np.float32)
    assert not ct_signs(with_plate, with_plate, node, spacing, 12.0, s).calcified
    assert ct_signs(with_plate, with_plate, node, spacing, 12.0, dataclasses.replace(s, calcified_min_depth_mm=0.0)).calcified
    core = node & (x ** 2 + y ** 2 <= 1.6**2) & (np.abs(z) <= 2.0)  # the same kind of focus, inside
    with_core = np.where(core, 900.0, hu).astype(np.float32)
    assert core.sum() < 0.1 * node.sum() and ct_signs(with_core, with_core, node, spacing, 12.0, s).calcified
    notch = node & (y > 2.0) & (np.abs(x) < 2.0)  # fat opening to the margin
    notched = node & ~notch
    fat_hu = np.where(notched, 35.0, -95.0).astype(np.float32)
    assert ct_signs(fat_hu, fat_hu, notched, spacing, 9.0, s).fat_containing
    assert not ct_signs(fat_hu, fat_hu, notched, spacing, s.fat_notch_min_short_axis_mm - 1.0, s).fat_containing
    assert not ct_signs(hu, hu, node, spacing, 12.0, s).fat_containing


def test_fat_level_density_is_read_inside_the_node_not_at_its_rim() -> None:
    """On a coarse CT (3 x 3 x 5 mm) a solid node's outline voxels are partial volume with the fat around
    it, so the mean over its mask falls to fat-like values; its inner voxels keep the tissue's density,
    and only a node whose inner voxels read fat-level is called fat-containing. A node with no inner
    voxel (under three pixels across) gets no density call."""
    from nstage.analysis.node_signs import ct_signs

    s = node_settings()
    spacing = (3.0, 3.0, 5.0)
    k, j, i = np.mgrid[0:5, 0:9, 0:9]
    x, y, z = (i - 4) * 3.0, (j - 4) * 3.0, (k - 2) * 5.0
    node = (x / 6.5) ** 2 + (y / 6.5) ** 2 + (z / 7.5) ** 2 <= 1.0
    rim = node & ~ndimage.binary_erosion(node, structure=np.ones((1, 3, 3), bool))
    assert rim.any() and (node & ~rim).any()
    solid = np.where(node, 35.0, -95.0).astype(np.float32)
    solid[rim] = -40.0  # the outline's partial volume with fat
    assert float(solid[node].mean()) <= s.fat_hu_mean_max  # what the whole mask reads
    assert not ct_signs(solid, solid, node, spacing, 12.0, s).fat_containing
    fatty = np.where(node, 0.0, -95.0).astype(np.float32)  # fat-level density throughout (a fat-rich node)
    fatty[rim] = -40.0
    assert ct_signs(fatty, fatty, node, spacing, 12.0, s).fat_containing
    thin = node & (np.abs(x) <= 3.0) & (np.abs(y) <= 1.5)  # one pixel wide: no inner voxel
    thin_hu = np.where(thin, 0.0, -95.0).astype(np.float32)
    assert not ct_signs(thin_hu, thin_hu, thin, spacing, 3.0, s).fat_containing
