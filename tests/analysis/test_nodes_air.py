"""The air rule of the node reader: node-sized soft tissue with air or lung close round it (a vessel in the lung, an airway wall) is no node."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from nstage.analysis.nodes import node_settings, read_nodes
from nstage.geometry import Grid

CT = Grid(shape=(24, 90, 110), spacing=(0.8, 0.8, 2.0), origin=(-44.0, -36.0, -24.0))
PET = Grid(shape=(14, 20, 24), spacing=(4.0, 4.0, 4.0), origin=(-46.0, -38.0, -26.0))
SEMI = (3.5, 3.5, 5.0)  # a 7 mm node
IN_FAT = (-22.0, -10.0, 0.0)
BESIDE_LUNG = (-22.0, 18.0, 0.0)  # a hilar node with the lung 2 mm away on one side
IN_LUNG = (16.0, 16.0, 0.0)  # the same size of soft tissue in the lung, in a sleeve of fat: a hilar vessel cut across
SLEEVE_MM = 1.5


def _ellipsoid(xx: np.ndarray, yy: np.ndarray, zz: np.ndarray, c: tuple[float, float, float], semi: tuple[float, ...]) -> np.ndarray:
    return ((xx - c[0]) / semi[0]) ** 2 + ((yy - c[1]) / semi[1]) ** 2 + ((zz - c[2]) / semi[2]) ** 2 <= 1.0


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """Mediastinal fat with two nodes, lung in one corner with the vessel in it; one station over all."""
    x, y, z = CT.axis_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    hu = np.full(CT.shape, -95.0, np.float32)
    hu[(yy > BESIDE_LUNG[1] + SEMI[1] + 2.0) & (xx < 0)] = -850.0
    hu[(yy > 4.0) & (xx > 0)] = -850.0
    hu[_ellipsoid(xx, yy, zz, IN_LUNG, tuple(v + SLEEVE_MM for v in SEMI))] = -95.0
    for c in (IN_FAT, BESIDE_LUNG, IN_LUNG):
        hu[_ellipsoid(xx, yy, zz, c, SEMI)] = 35.0
    rng = np.random.default_rng(3)
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[(np.abs(xx) < 40) & (np.abs(yy) < 30) & (np.abs(zz) < 16)] = 10
    return hu, stations


def _centres(max_air_around: float | None = None) -> list[tuple[float, float, float]]:
    hu, stations = _phantom()
    s = node_settings() if max_air_around is None else dataclasses.replace(node_settings(), max_air_around=max_air_around)
    found = read_nodes(hu, CT, np.full(PET.shape, 0.5, np.float32), PET, stations, {10: "10R"}, 1.8, None, s)["10R"]
    return [n.centre_lps for n in found.nodes]


def _near(centres: list[tuple[float, float, float]], c: tuple[float, float, float]) -> bool:
    return any(float(np.linalg.norm(np.subtract(p, c))) < 2.5 for p in centres)


@pytest.fixture(scope="module")
def with_rule() -> list[tuple[float, float, float]]:
    return _centres()


def test_a_vessel_in_the_lung_is_no_node(with_rule: list[tuple[float, float, float]]) -> None:
    assert not _near(with_rule, IN_LUNG)


def test_nodes_in_fat_and_beside_the_lung_are_kept(with_rule: list[tuple[float, float, float]]) -> None:
    assert _near(with_rule, IN_FAT)
    assert _near(with_rule, BESIDE_LUNG)


def test_without_the_rule_the_vessel_passes_the_other_tests() -> None:
    """The air rule is what rejects it: size, shape and the fat-surround test (its sleeve is fat) keep it."""
    assert _near(_centres(max_air_around=1.0), IN_LUNG)
