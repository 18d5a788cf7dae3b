"""The bone rule of the node reader: node-sized soft tissue along a bone (the diaphragmatic crus on a vertebra) is no node."""

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
BONE_Y = 6.0  # a vertebral body: bone from here on (y grows posterior), 60 x 30 x 48 mm
ON_BONE = (10.0, BONE_Y - SEMI[1], 0.0)  # soft tissue lying on the bone
IN_FAT = (-20.0, BONE_Y - SEMI[1] - 7.0, 0.0)  # a node with 7 mm of fat between it and the bone
CALCIFIED = (-20.0, -22.0, 0.0)  # a calcified node away from the bone: its own calcium is no bone


def _ellipsoid(xx: np.ndarray, yy: np.ndarray, zz: np.ndarray, c: tuple[float, float, float], semi: tuple[float, ...]) -> np.ndarray:
    return ((xx - c[0]) / semi[0]) ** 2 + ((yy - c[1]) / semi[1]) ** 2 + ((zz - c[2]) / semi[2]) ** 2 <= 1.0


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """Fat with a bone block (cortex and marrow), soft tissue on it, a node in fat and a calcified node; one station in front of the bone."""
    x, y, z = CT.axis_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    hu = np.full(CT.shape, -95.0, np.float32)
    bone = (yy >= BONE_Y) & (yy < BONE_Y + 30.0) & (np.abs(xx) < 30.0)
    hu[bone] = 700.0
    hu[bone & (yy >= BONE_Y + 1.5) & (yy < BONE_Y + 28.5) & (np.abs(xx) < 28.5)] = 250.0
    for c in (ON_BONE, IN_FAT, CALCIFIED):
        hu[_ellipsoid(xx, yy, zz, c, SEMI)] = 35.0
    hu[_ellipsoid(xx, yy, zz, CALCIFIED, (1.6, 1.6, 2.5))] = 600.0
    rng = np.random.default_rng(5)
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[(np.abs(xx) < 40) & (yy > -32) & (yy < BONE_Y - 1.0) & (np.abs(zz) < 16)] = 13
    return hu, stations


def _centres(max_bone_around: float | None = None) -> list[tuple[float, float, float]]:
    hu, stations = _phantom()
    s = node_settings() if max_bone_around is None else dataclasses.replace(node_settings(), max_bone_around=max_bone_around)
    found = read_nodes(hu, CT, np.full(PET.shape, 0.5, np.float32), PET, stations, {13: "9"}, 1.8, None, s)["9"]
    return [n.centre_lps for n in found.nodes]


def _near(centres: list[tuple[float, float, float]], c: tuple[float, float, float]) -> bool:
    return any(float(np.linalg.norm(np.subtract(p, c))) < 2.5 for p in centres)


@pytest.fixture(scope="module")
def with_rule() -> list[tuple[float, float, float]]:
    return _centres()


def test_soft_tissue_on_a_bone_is_no_node(with_rule: list[tuple[float, float, float]]) -> None:
    assert not _near(with_rule, ON_BONE)


def test_a_node_in_fat_near_the_bone_and_a_calcified_node_are_kept(with_rule: list[tuple[float, float, float]]) -> None:
    assert _near(with_rule, IN_FAT)
    assert _near(with_rule, CALCIFIED)


def test_without_the_rule_the_soft_tissue_on_the_bone_passes_the_other_tests() -> None:
    """The bone rule is what rejects it: size, shape, the fat-surround and the air tests keep it."""
    assert _near(_centres(max_bone_around=1.0), ON_BONE)
