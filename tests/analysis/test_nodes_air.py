"""The air rule of the node reader: node-sized soft tissue with air or lung close round it (a vessel in the lung, an airway wall) is no node."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.analysis.node_phantom import CT, SEMI, Point, ellipsoid, mesh, near, node_centres

IN_FAT = (-22.0, -10.0, 0.0)
BESIDE_LUNG = (-22.0, 18.0, 0.0)  # a hilar node with the lung 2 mm away on one side
IN_LUNG = (16.0, 16.0, 0.0)  # the same size of soft tissue in the lung, in a sleeve of fat: a hilar vessel cut across
SLEEVE_MM = 1.5


def _centres(**overrides: float) -> list[Point]:
    """Mediastinal fat with two nodes, lung in one corner with the vessel in it; one station over all."""
    xx, yy, zz = mesh()
    hu = np.full(CT.shape, -95.0, np.float32)
    hu[(yy > BESIDE_LUNG[1] + SEMI[1] + 2.0) & (xx < 0)] = -850.0
    hu[(yy > 4.0) & (xx > 0)] = -850.0
    hu[ellipsoid(xx, yy, zz, IN_LUNG, tuple(v + SLEEVE_MM for v in SEMI))] = -95.0
    for c in (IN_FAT, BESIDE_LUNG, IN_LUNG):
        hu[ellipsoid(xx, yy, zz, c, SEMI)] = 35.0
    rng = np.random.default_rng(3)
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[(np.abs(xx) < 40) & (np.abs(yy) < 30) & (np.abs(zz) < 16)] = 10
    return node_centres(hu, stations, 10, "10R", **overrides)


@pytest.fixture(scope="module")
def with_rule() -> list[Point]:
    return _centres()


def test_a_vessel_in_the_lung_is_no_node(with_rule: list[Point]) -> None:
    assert not near(with_rule, IN_LUNG)


def test_nodes_in_fat_and_beside_the_lung_are_kept(with_rule: list[Point]) -> None:
    assert near(with_rule, IN_FAT)
    assert near(with_rule, BESIDE_LUNG)


def test_without_the_rule_the_vessel_passes_the_other_tests() -> None:
    """The air rule is what rejects it: size, shape and the fat-surround test (its sleeve is fat) keep it."""
    assert near(_centres(max_air_around=1.0), IN_LUNG)
