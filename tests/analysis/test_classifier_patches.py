"""Patch extraction geometry: a hot voxel at a known LPS point lands at the expected patch voxel."""

from __future__ import annotations

import numpy as np

from nstage.analysis.classifier.patches import crop, extract_patches, patch_grid, station_centres
from nstage.analysis.classifier.settings import Cube, PatchSettings
from nstage.geometry import Grid

CUBE = Cube(spacing_mm=2.0, cache_size=20, size=16)
SETTINGS = PatchSettings(node=Cube(1.0, 12, 10), context=CUBE, ct_window=(-200.0, 400.0), suv_range=(0.0, 10.0))


def extract_station_patches(hu, ct_grid, suv, pet_grid, stations, settings):
    """Context patches on each station's bounding box (label order), as station_inputs asks for them."""
    centres = dict(sorted(station_centres(stations, ct_grid).items()))
    return np.array(sorted(centres)), extract_patches(hu, ct_grid, suv, pet_grid, stations, centres, settings.context, settings)


def _case():
    ct_grid = Grid((40, 50, 60), (1.5, 1.5, 2.5), (-40.0, -30.0, -120.0))
    pet_grid = Grid((30, 36, 40), (2.5, 2.5, 3.0), (-45.0, -35.0, -125.0))
    hu = np.full(ct_grid.shape, 40.0, np.float32)
    stations = np.zeros(ct_grid.shape, np.uint8)
    stations[10:20, 12:30, 20:34] = 7  # one station box
    stations[25:30, 5:10, 5:12] = 3
    suv = np.full(pet_grid.shape, 1.0, np.float32)
    return ct_grid, pet_grid, hu, stations, suv


def test_hot_pet_voxel_lands_at_expected_patch_voxel():
    ct_grid, pet_grid, hu, stations, suv = _case()
    centre = station_centres(stations, ct_grid)[7]
    g = patch_grid(centre, CUBE)
    target = (13, 6, 11)  # (i, j, k) patch voxel: off-centre on purpose
    point = g.index_to_lps(np.array(target, float))
    pet_ijk = np.rint(pet_grid.lps_to_index(point)).astype(int)
    # move the PET grid so that one PET voxel centre sits exactly on the point
    shift = point - pet_grid.index_to_lps(pet_ijk.astype(float))
    pet_grid = Grid(pet_grid.shape, pet_grid.spacing, tuple(np.asarray(pet_grid.origin) + shift))
    suv[pet_ijk[2], pet_ijk[1], pet_ijk[0]] = 9.0
    labels, patches = extract_station_patches(hu, ct_grid, suv, pet_grid, stations, SETTINGS)
    assert labels.tolist() == [3, 7]
    s = labels.tolist().index(7)
    channel = patches[s, 1]
    k, j, i = np.unravel_index(np.argmax(channel), channel.shape)
    assert (i, j, k) == target  # arrays [k, j, i] with i along L, j along P, k along S
    assert np.isclose(channel[k, j, i], 0.9, atol=1e-5)  # SUV 9 scaled by suv_range [0, 10]


def test_mask_channel_is_the_station_centred_and_ct_windowed():
    ct_grid, pet_grid, hu, stations, suv = _case()
    labels, patches = extract_station_patches(hu, ct_grid, suv, pet_grid, stations, SETTINGS)
    s = labels.tolist().index(7)
    mask = patches[s, 2] > 0.5
    idx = np.argwhere(mask)
    centre_vox = (idx.min(axis=0) + idx.max(axis=0)) / 2.0
    assert np.allclose(centre_vox, (CUBE.cache_size - 1) / 2.0, atol=0.5)  # box centred in the patch
    # physical extent of the box (CT voxels 14x18x10 of 2.5/1.5/1.5 mm) is preserved within a patch voxel
    ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * CUBE.spacing_mm  # (k, j, i)
    assert np.allclose(ext, [10 * 2.5, 18 * 1.5, 14 * 1.5], atol=CUBE.spacing_mm + 0.01)
    assert np.isclose(patches[s, 0][mask].mean(), (40 + 200) / 600, atol=1e-5)
    corner = labels.tolist().index(3)  # station 3 lies near the CT's corner: its patch reaches outside
    assert patches[corner, 0].min() == 0.0 and patches[corner, 0].max() > 0.39  # outside the CT: air (-1000 HU) -> 0
    c = crop(patches, CUBE.size)
    assert c.shape == (2, 3, 16, 16, 16)
    np.testing.assert_array_equal(c[s, 2], patches[s, 2, 2:18, 2:18, 2:18])
