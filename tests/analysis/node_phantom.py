"""Shared pieces of the node reader's rule phantoms: one station in fat at 0.8 x 0.8 x 2 mm, a flat PET, nodes as ellipsoids."""

from __future__ import annotations

import dataclasses

import numpy as np

from nstage.analysis.nodes import node_settings, read_nodes
from nstage.geometry import Grid

CT = Grid(shape=(24, 90, 110), spacing=(0.8, 0.8, 2.0), origin=(-44.0, -36.0, -24.0))
PET = Grid(shape=(14, 20, 24), spacing=(4.0, 4.0, 4.0), origin=(-46.0, -38.0, -26.0))
SEMI = (3.5, 3.5, 5.0)  # a 7 mm node
Point = tuple[float, float, float]


def mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (LPS mm) of every CT voxel, each ``[k, j, i]``."""
    x, y, z = CT.axis_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return xx, yy, zz


def ellipsoid(xx: np.ndarray, yy: np.ndarray, zz: np.ndarray, c: Point, semi: tuple[float, ...]) -> np.ndarray:
    return ((xx - c[0]) / semi[0]) ** 2 + ((yy - c[1]) / semi[1]) ** 2 + ((zz - c[2]) / semi[2]) ** 2 <= 1.0


def node_centres(hu: np.ndarray, stations: np.ndarray, label: int, name: str, **overrides: float) -> list[Point]:
    """Centres of the nodes read in the one station, with node settings overridden by name."""
    s = dataclasses.replace(node_settings(), **overrides)
    found = read_nodes(hu, CT, np.full(PET.shape, 0.5, np.float32), PET, stations, {label: name}, 1.8, None, s)[name]
    return [n.centre_lps for n in found.nodes]


def near(centres: list[Point], c: Point) -> bool:
    return any(float(np.linalg.norm(np.subtract(p, c))) < 2.5 for p in centres)
