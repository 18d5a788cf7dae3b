"""Coarse-to-fine painting decides whole blocks only where that cannot change a voxel."""

from __future__ import annotations

import numpy as np
import pytest

import nstage.synth.rasterize as rasterize
from nstage.geometry import Grid
from nstage.synth.anatomy import build_anatomy, sample_params
from nstage.synth.case import with_lung_vessels
from nstage.synth.frame import sample_frame


def _paint(grid: Grid, frame, anatomy, blocked: bool, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    monkeypatch.setattr(rasterize, "MIN_BLOCKED_VOXELS", 10_000 if blocked else 10**12)
    canvas = rasterize.Canvas.create(grid, frame)
    rasterize.paint_anatomy(canvas, anatomy)
    return canvas.tissue


def test_blocked_painting_equals_voxel_by_voxel(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    params = sample_params(rng, "F", 24.0, 1.65)
    anatomy = with_lung_vessels(build_anatomy(params), rng)
    frame = sample_frame(rng, params.size, params.width, params.depth, np.array([0.0, -20.0, -350.0]))
    # 1 mm in-plane, 2.5 mm slices over the mediastinum and a lung: blocks of 4 x 4 x 2 voxels
    grid = Grid(shape=(60, 120, 160), spacing=(1.0, 1.0, 2.5), origin=(-120.0, -80.0, -420.0))
    blocked = _paint(grid, frame, anatomy, True, monkeypatch)
    direct = _paint(grid, frame, anatomy, False, monkeypatch)
    assert len(np.unique(direct)) > 8
    assert np.array_equal(blocked, direct), int((blocked != direct).sum())


def test_a_too_small_lipschitz_bound_would_change_voxels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: deciding blocks on their centre alone mislabels boundary voxels."""
    rng = np.random.default_rng(4)
    params = sample_params(rng, "F", 24.0, 1.65)
    anatomy = build_anatomy(params)
    frame = sample_frame(rng, params.size, params.width, params.depth, np.array([0.0, -20.0, -350.0]))
    grid = Grid(shape=(40, 100, 140), spacing=(1.0, 1.0, 2.5), origin=(-100.0, -70.0, -410.0))
    direct = _paint(grid, frame, anatomy, False, monkeypatch)
    monkeypatch.setattr(rasterize, "LIPSCHITZ", 0.0)
    careless = _paint(grid, frame, anatomy, True, monkeypatch)
    assert (careless != direct).sum() > 100
