"""The nodes' CT and PET signs: drawn by kind as nodes.json says, and painted where they belong."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from nstage.geometry import Grid
from nstage.stations import station_names
from nstage.synth.disease import NodeSpec, TumourSpec, make_node, sample_disease
from nstage.synth.frame import identity_frame
from nstage.synth.lesions import PlacedNode, PlacedTumour
from nstage.synth.phantom import sphere_recovery
from nstage.synth.rasterize import Canvas
from nstage.synth.render import PetSettings, node_hu_means, node_tissue_hu, paint_lesions, uptake_map
from nstage.synth.shapes import Ellipsoid, Union
from nstage.synth.tissues import label, tissues

N_PATIENTS = 400


@pytest.fixture(scope="module")
def nodes() -> list[NodeSpec]:
    return [n for s in range(N_PATIENTS) for n in sample_disease(np.random.default_rng([16, s])).nodes]


def test_normal_nodes_follow_the_station_sizes_largest_subcarinal(nodes: list[NodeSpec]) -> None:
    sizes = defaultdict(list)
    for n in nodes:
        if n.kind == "normal":
            sizes[n.station].append(n.short_axis_mm)
    means = {s: float(np.mean(v)) for s, v in sizes.items()}
    assert set(means) == set(station_names())
    assert all(2.0 <= m <= 6.0 for m in means.values()), means
    assert max(means, key=means.get) == "7"


def test_malignant_nodes_are_rounder_and_almost_never_have_a_fatty_hilum(nodes: list[NodeSpec]) -> None:
    ratio = {k: np.mean([n.short_axis_mm / n.long_axis_mm for n in nodes if n.malignant == k]) for k in (True, False)}
    assert ratio[True] - ratio[False] > 0.05, ratio
    hilum = {k: np.mean([n.fatty_hilum for n in nodes if n.malignant == k and n.short_axis_mm >= 5]) for k in (True, False)}
    assert hilum[True] < 0.05 < 0.25 < hilum[False], hilum


def test_necrosis_only_in_larger_metastases_and_commoner_with_size(nodes: list[NodeSpec]) -> None:
    necrotic = [n for n in nodes if n.necrotic]
    assert necrotic and all(n.malignant and n.short_axis_mm > 10 for n in necrotic)
    mal = [n for n in nodes if n.malignant]
    share = lambda lo, hi: np.mean([n.necrotic for n in mal if lo <= n.short_axis_mm < hi])  # noqa: E731
    assert share(16, 99) > share(10, 14) > 0


def test_metastatic_uptake_grows_with_size(nodes: list[NodeSpec]) -> None:
    mal = [n for n in nodes if n.malignant]
    small = np.median([n.suv for n in mal if n.short_axis_mm < 8])
    large = np.median([n.suv for n in mal if n.short_axis_mm >= 15])
    assert large > 1.5 * small


def _canvas() -> Canvas:
    grid = Grid(shape=(30, 40, 40), spacing=(0.5, 0.5, 1.0), origin=(-10.0, -10.0, -15.0))
    canvas = Canvas.create(grid, identity_frame())
    canvas.tissue[:] = label("mediastinal_fat")
    return canvas


def _placed(spec: NodeSpec) -> list[PlacedNode]:
    semi = np.array([spec.long_axis_mm, spec.short_axis_mm, spec.short_axis_mm]) / 2
    return [PlacedNode(spec, Ellipsoid(np.zeros(3), semi, np.eye(3)), instance=3)]


def _far_tumour() -> PlacedTumour:
    """A tumour outside the test grid (the node tests need none in view)."""
    centre = np.array([500.0, 500, 500])
    return PlacedTumour(TumourSpec("R", "RUL", 30.0, 9.0, False, False), Union((Ellipsoid(centre, np.ones(3)),)), None, centre)


def _spec(**kw: object) -> NodeSpec:
    base = dict(station="7", kind="malignant", short_axis_mm=14.0, long_axis_mm=18.0, suv=6.0, tissue_hu=33.0, enhancement_hu=40.0)
    return NodeSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_fatty_hilum_paints_fat_inside_the_node_and_lowers_its_density() -> None:
    plain, fatty = _canvas(), _canvas()
    spec = _spec(kind="reactive", fatty_hilum=True, sign_fraction=0.6)
    lp = paint_lesions(plain, _far_tumour(), _placed(_spec(kind="reactive")))
    lf = paint_lesions(fatty, _far_tumour(), _placed(spec))
    node = lf.instance == 3
    assert (fatty.tissue[node] == label("mediastinal_fat")).sum() > 0.1 * node.sum()
    hu_plain = node_hu_means(lp, plain.tissue, _placed(_spec(kind="reactive")), contrast=False)[3]
    hu_fatty = node_hu_means(lf, fatty.tissue, _placed(spec), contrast=False)[3]
    assert hu_plain == pytest.approx(33.0, abs=0.5) and hu_fatty < hu_plain - 10


def test_necrotic_core_is_lower_in_density_unenhanced_and_in_uptake() -> None:
    canvas = _canvas()
    spec = _spec(necrotic=True, sign_fraction=0.5, necrosis_hu_drop=20.0, core_uptake_fraction=0.3)
    placed = _placed(spec)
    lesions = paint_lesions(canvas, _far_tumour(), placed)
    core, rim = lesions.node_core, (lesions.instance == 3) & ~lesions.node_core
    assert core.sum() > 0 and rim.sum() > core.sum()
    hu = np.zeros(canvas.grid.shape, np.float32)
    idx, values = node_tissue_hu(lesions, canvas.tissue, placed, contrast=True)
    hu.ravel()[idx] = values
    assert hu[rim].mean() == pytest.approx(73.0) and hu[core].mean() == pytest.approx(13.0)  # the rim enhances, the core does not
    suv_tissue = {name: 0.3 for name in tissues()}
    suv = uptake_map(canvas, lesions, _far_tumour(), placed, PetSettings(7.0, 0.2, suv_tissue), np.random.default_rng(0))
    assert suv[core].mean() == pytest.approx(0.3 * suv[rim].mean(), rel=0.15)


def test_make_node_draws_signs_by_kind() -> None:
    rng = np.random.default_rng(3)
    calcified = [make_node(rng, "7", "calcified", 9.0, calcified=True) for _ in range(50)]
    assert all(n.calcified and n.sign_fraction > 0 and not n.necrotic for n in calcified)
    normal = [make_node(rng, "1R", "normal", 9.0) for _ in range(200)]
    assert not any(n.necrotic or n.calcified for n in normal)


def test_a_calcified_node_never_carries_a_fatty_hilum_it_would_be_painted_with() -> None:
    """The renderer paints one inner sign: a node drawn calcified and fatty showed fat and no calcium."""
    rng = np.random.default_rng(11)
    avid = [make_node(rng, "4R", "reactive", 9.0, calcified=True) for _ in range(300)]
    assert all(n.calcified and not n.fatty_hilum for n in avid)
    plain = [make_node(rng, "4R", "reactive", 9.0) for _ in range(300)]
    assert sum(n.fatty_hilum for n in plain) > 60  # reactive nodes still carry a hilum in about half


def test_sphere_recovery_rises_with_size_and_falls_with_blur() -> None:
    sharp = [r.rc_max for r in sphere_recovery(6.0, 0.15, 4.07, 3.0, trials=4)]
    blurred = [r.rc_max for r in sphere_recovery(9.0, 0.15, 4.07, 3.0, trials=4)]
    assert sharp[0] < sharp[2] < sharp[-1] and blurred[0] < blurred[2] < blurred[-1]
    assert blurred[0] < sharp[0] - 0.1
