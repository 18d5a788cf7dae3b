"""The faster forms of a study's hot spots (issue 41) give what the plain forms give: each is checked here against the
plain computation it replaced, on masks and mappings that reach the grids' edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nstage.analysis.tumour_side import _ball, lung_envelope
from nstage.geometry import Grid, load_nifti, save_nifti
from nstage.stationmap.label_transfer import _map_box, _map_points
from nstage.stationmap.thorax_landmarks import within_mm
from nstage.stations import present_labels


def _blobs(shape: tuple[int, int, int], seed: int, count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(count):
        c = rng.integers(0, shape)
        r = rng.integers(1, 5, size=3)
        mask[tuple(slice(max(0, a - b), a + b) for a, b in zip(c, r))] = True
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_within_mm_is_the_distance_transform_of_the_whole_grid(seed: int) -> None:
    grid = Grid((40, 50, 60), (3.0, 3.0, 5.0), (0.0, 0.0, 0.0))
    seeds = _blobs(grid.shape, seed, count=3)
    seeds[0, 0, :4] = seed == 2  # one case touches the grid's corner
    for radius in (4.0, 20.0, 45.0):
        whole = ndimage.distance_transform_edt(~seeds, sampling=(5.0, 3.0, 3.0)) <= radius
        assert np.array_equal(within_mm(seeds, grid, radius), whole), radius
    assert not within_mm(np.zeros(grid.shape, bool), grid, 20.0).any()


@pytest.mark.parametrize("seed", [3, 4])
def test_the_lung_envelope_is_the_closing_of_the_whole_field(seed: int) -> None:
    grid = Grid((50, 80, 90), (4.07, 4.07, 3.0), (0.0, 0.0, 0.0))
    lungs = _blobs(grid.shape, seed)
    lungs[20:30, 10:14, 0:6] = True  # a piece at the field's edge: the closing's border handling matters there
    closed = ndimage.binary_closing(lungs, structure=_ball(12.0, grid.spacing), iterations=1, border_value=0)
    whole = np.stack([ndimage.binary_fill_holes(s) for s in closed]) | lungs
    assert np.array_equal(lung_envelope(lungs, grid, 12.0), whole)
    assert not lung_envelope(np.zeros(grid.shape, bool), grid, 12.0).any()


def test_the_lung_envelope_closes_a_gap_at_the_edge_of_the_lungs_box() -> None:
    grid = Grid((30, 40, 40), (4.07, 4.07, 3.0), (0.0, 0.0, 0.0))
    lungs = np.zeros(grid.shape, bool)
    lungs[10:20, 10:20, 10:20] = True
    lungs[10:20, 22:30, 10:20] = True  # a gap of two rows between two parts, open to the box's sides
    closed = ndimage.binary_closing(lungs, structure=_ball(12.0, grid.spacing), iterations=1, border_value=0)
    whole = np.stack([ndimage.binary_fill_holes(s) for s in closed]) | lungs
    assert whole[15, 20:22, 10:20].all()  # the closing bridges the gap up to the box's edge
    assert np.array_equal(lung_envelope(lungs, grid, 12.0), whole)


def test_the_mapping_on_a_box_is_its_interpolation_point_by_point() -> None:
    rng = np.random.default_rng(5)
    work = Grid((20, 24, 30), (3.0, 3.0, 3.0), (-40.0, -30.5, -20.2))
    mapping = rng.normal(size=work.shape + (3,)) * 10.0
    ct = Grid((40, 100, 110), (0.9, 0.9, 2.5), (-50.1, -40.3, -30.0))  # beyond the working grid on every side
    ks, js, is_ = np.arange(2, 38), np.arange(5, 99), np.arange(0, 110)
    kk, jj, ii = np.meshgrid(ks, js, is_, indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1).astype(float)
    expected = _map_points(ct.index_to_lps(ijk), mapping, work)
    assert np.allclose(_map_box(mapping, work, ct, (ks, js, is_)), expected, rtol=0, atol=1e-9)


def test_present_labels_are_the_nonzero_values() -> None:
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[2, 3, 4], labels[5, 5, 5], labels[9, 19, 29] = 7, 2, 17
    assert present_labels(labels) == [2, 7, 17]
    assert present_labels(np.zeros((3, 3, 3), np.uint8)) == []


def test_a_nifti_written_from_the_transposed_view_reads_back(tmp_path) -> None:
    grid = Grid((7, 9, 11), (0.8, 0.9, 2.5), (-10.0, 20.0, 30.0))
    labels = np.random.default_rng(6).integers(0, 18, size=grid.shape).astype(np.uint8)
    save_nifti(labels, grid, tmp_path / "m.nii.gz")
    back, back_grid = load_nifti(tmp_path / "m.nii.gz")
    assert np.array_equal(back, labels) and back_grid.shape == grid.shape
    assert np.allclose(back_grid.spacing, grid.spacing) and np.allclose(back_grid.origin, grid.origin)
