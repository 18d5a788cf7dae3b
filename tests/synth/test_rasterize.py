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


def _plain_paint(canvas: rasterize.Canvas, shape, tissue: str, over) -> None:
    """The painter as it was before sub-boxes and unions: piece after piece over each piece's whole
    index box, blocked as Canvas._inside documents (the yardstick for the fast painter)."""
    from nstage.synth.tissues import label

    allowed = None
    if over is not None:
        allowed = np.zeros(256, bool)
        allowed[[label(t) for t in over]] = True
    spacing = np.array(canvas.grid.spacing[::-1], float)
    block = np.maximum(np.rint(rasterize.BLOCK_MM / spacing).astype(int), 1)
    for piece in rasterize._pieces(shape):
        box = canvas.index_box(piece.lo, piece.hi)
        if box is None:
            continue
        cx, cy, cz = canvas.cx[box], canvas.cy[box], canvas.cz[box]
        if cx.size < rasterize.MIN_BLOCKED_VOXELS or np.prod(block) < rasterize.MIN_BLOCK_VOXELS:
            mask = piece.sdf(cx, cy, cz) < 0
        else:
            reach = rasterize.LIPSCHITZ * float(np.linalg.norm(block * spacing)) / float(np.min(canvas.frame.scale))
            centres = np.ix_(*(np.minimum(np.arange(-(-n // b)) * b + b // 2, n - 1) for b, n in zip(block, cx.shape)))
            coarse = piece.sdf(cx[centres], cy[centres], cz[centres])

            def full(flags: np.ndarray, shape: tuple[int, ...] = cx.shape) -> np.ndarray:
                for axis, b in enumerate(block):
                    flags = flags.repeat(b, axis=axis)
                return flags[: shape[0], : shape[1], : shape[2]]

            mask = full(coarse < -reach)
            near = np.nonzero(full(np.abs(coarse) <= reach))
            mask[near] = piece.sdf(cx[near], cy[near], cz[near]) < 0
        if allowed is not None:
            mask &= allowed[canvas.tissue[box]]
        canvas.tissue[box][mask] = label(tissue)


@pytest.mark.parametrize("spacing", [(1.9, 1.9, 2.5), (3.1, 3.1, 5.0)])
def test_fast_painting_labels_every_voxel_as_piece_by_piece_painting(spacing: tuple[float, float, float]) -> None:
    """Looking only at each piece's sub-box, evaluating tube segments together and skipping voxels
    that other pieces hold must not change one label (blocked and voxel-by-voxel pieces both)."""
    rng = np.random.default_rng(11)
    params = sample_params(rng, "M", 31.0, 1.80)
    anatomy = with_lung_vessels(build_anatomy(params), rng)
    frame = sample_frame(rng, params.size, params.width, params.depth, np.array([3.0, -22.0, -340.0]))
    n = (int(130 / spacing[2]), int(230 / spacing[1]), int(300 / spacing[0]))
    grid = Grid(shape=n, spacing=spacing, origin=(-150.0, -125.0, -465.0))
    fast = rasterize.Canvas.create(grid, frame)
    rasterize.paint_anatomy(fast, anatomy)
    plain = rasterize.Canvas.create(grid, frame)
    for s in anatomy.structures:
        _plain_paint(plain, s.shape, s.tissue, s.over)
    assert len(np.unique(plain.tissue)) > 10
    assert np.array_equal(fast.tissue, plain.tissue), int((fast.tissue != plain.tissue).sum())


def test_rind_paints_what_the_clip_it_stands_for_paints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rind(body, t) is Clipped(body, -body.sdf - t) with the body's distance worked out once."""
    from nstage.synth.shapes import Clipped, Rind

    rng = np.random.default_rng(5)
    params = sample_params(rng, "F", 22.0, 1.60)
    anatomy = build_anatomy(params)
    frame = sample_frame(rng, params.size, params.width, params.depth, np.array([0.0, -20.0, -350.0]))
    body = anatomy.body
    x, y, z = (rng.uniform(-200, 200, 5000) for _ in range(3))
    assert np.array_equal(Rind(body, 2.0).sdf(x, y, z), Clipped(body, lambda a, b, c: -body.sdf(a, b, c) - 2.0).sdf(x, y, z))
    grid = Grid(shape=(40, 90, 120), spacing=(2.0, 2.0, 2.5), origin=(-120.0, -90.0, -420.0))
    masks = []
    for blocked in (True, False):
        monkeypatch.setattr(rasterize, "MIN_BLOCKED_VOXELS", 10_000 if blocked else 10**12)
        for shape in (Rind(body, 2.0), Clipped(body, lambda a, b, c: -body.sdf(a, b, c) - 2.0)):
            canvas = rasterize.Canvas.create(grid, frame)
            canvas.remember([body])
            canvas.paint(body, "subcutaneous_fat")
            canvas.paint(shape, "skin")
            masks.append(canvas.tissue.copy())
    assert (masks[0] == label_of("skin")).sum() > 1000
    assert all(np.array_equal(masks[0], m) for m in masks[1:])


def label_of(name: str) -> int:
    from nstage.synth.tissues import label

    return label(name)
