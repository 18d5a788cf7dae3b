"""Geometry: LPS grids, NIfTI round trips (RAS on disk) and physical-space resampling."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nstage.geometry import Grid, load_nifti, resample, save_nifti


def test_index_and_lps_round_trip() -> None:
    g = Grid((4, 5, 6), (0.8, 0.9, 2.5), (-100.0, -50.0, -300.0))
    ijk = np.array([[0, 0, 0], [5, 4, 3], [2.5, 1.0, 0.5]])
    assert np.allclose(g.lps_to_index(g.index_to_lps(ijk)), ijk)
    assert np.allclose(g.index_to_lps(np.array([5, 4, 3])), [-100 + 4.0, -50 + 3.6, -300 + 7.5])
    assert np.allclose(g.slice_positions()[:, 2], [-300, -297.5, -295, -292.5])


def test_nifti_keeps_lps_geometry(tmp_path) -> None:
    g = Grid((3, 4, 5), (1.5, 2.0, 3.0), (10.0, -20.0, 30.0))
    a = np.arange(60, dtype=np.float32).reshape(g.shape)
    save_nifti(a, g, tmp_path / "a.nii.gz")
    # on disk: RAS affine over [i, j, k]; voxel (i=4, j=3, k=2) at LPS (16, -14, 36) is RAS (-16, 14, 36)
    img = nib.load(str(tmp_path / "a.nii.gz"))
    assert np.allclose(img.affine @ [4, 3, 2, 1], [-16.0, 14.0, 36.0, 1.0])
    assert np.asarray(img.dataobj)[4, 3, 2] == a[2, 3, 4]
    b, g2 = load_nifti(tmp_path / "a.nii.gz")
    assert np.array_equal(a, b)
    assert np.allclose(g2.affine, g.affine)


def test_resample_puts_a_hot_point_where_it_is() -> None:
    src = Grid((40, 40, 40), (4.0, 4.0, 4.0), (-80.0, -80.0, -80.0))
    a = np.zeros(src.shape, np.float32)
    a[25, 12, 30] = 1.0  # LPS (40, -32, 20)
    dst = Grid((100, 100, 100), (1.0, 1.0, 1.0), (-30.0, -60.0, -40.0))
    out = resample(a, src, dst, order=0)
    k, j, i = np.unravel_index(np.argmax(out), out.shape)
    assert np.allclose(dst.index_to_lps(np.array([i, j, k])), [40, -32, 20], atol=2.0)
    assert np.allclose(dst.index_to_lps(np.argwhere(out > 0).mean(axis=0)[::-1]), [40, -32, 20], atol=0.6)


def test_grid_rejects_non_orthonormal_direction() -> None:
    with pytest.raises(ValueError):
        Grid((1, 1, 1), (1, 1, 1), (0, 0, 0), np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]]))
