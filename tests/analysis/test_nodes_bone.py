"""The bone rule of the node reader: node-sized soft tissue along a bone (the diaphragmatic crus on a vertebra) is no node."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.analysis.node_phantom import CT, SEMI, Point, ellipsoid, mesh, near, node_centres

BONE_Y = 6.0  # a vertebral body: bone from here on (y grows posterior), 60 x 30 x 48 mm
ON_BONE = (10.0, BONE_Y - SEMI[1], 0.0)  # soft tissue lying on the bone
IN_FAT = (-20.0, BONE_Y - SEMI[1] - 7.0, 0.0)  # a node with 7 mm of fat between it and the bone
CALCIFIED = (-20.0, -22.0, 0.0)  # a calcified node away from the bone: its own calcium is no bone


def _centres(**overrides: float) -> list[Point]:
    """Fat with a bone block (cortex and marrow), soft tissue on it, a node in fat and a calcified node; one station in front of the bone."""
    xx, yy, zz = mesh()
    hu = np.full(CT.shape, -95.0, np.float32)
    bone = (yy >= BONE_Y) & (yy < BONE_Y + 30.0) & (np.abs(xx) < 30.0)
    hu[bone] = 700.0
    hu[bone & (yy >= BONE_Y + 1.5) & (yy < BONE_Y + 28.5) & (np.abs(xx) < 28.5)] = 250.0
    for c in (ON_BONE, IN_FAT, CALCIFIED):
        hu[ellipsoid(xx, yy, zz, c, SEMI)] = 35.0
    hu[ellipsoid(xx, yy, zz, CALCIFIED, (1.6, 1.6, 2.5))] = 600.0
    rng = np.random.default_rng(5)
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6)) + rng.normal(0, 6.0, CT.shape).astype(np.float32)
    stations = np.zeros(CT.shape, np.uint8)
    stations[(np.abs(xx) < 40) & (yy > -32) & (yy < BONE_Y - 1.0) & (np.abs(zz) < 16)] = 13
    return node_centres(hu, stations, 13, "9", **overrides)


@pytest.fixture(scope="module")
def with_rule() -> list[Point]:
    return _centres()


def test_soft_tissue_on_a_bone_is_no_node(with_rule: list[Point]) -> None:
    assert not near(with_rule, ON_BONE)


def test_a_node_in_fat_near_the_bone_and_a_calcified_node_are_kept(with_rule: list[Point]) -> None:
    assert near(with_rule, IN_FAT)
    assert near(with_rule, CALCIFIED)


def test_without_the_rule_the_soft_tissue_on_the_bone_passes_the_other_tests() -> None:
    """The bone rule is what rejects it: size, shape, the fat-surround and the air tests keep it."""
    assert near(_centres(max_bone_around=1.0), ON_BONE)
