"""Slices -> volume: sorting, geometry, rescale, and each geometry check (repair or error)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.ingest.dicom_index import index_folder
from nstage.ingest.volumes import load_volume, slice_summary
from nstage.synth.dicom_writer import write_ct_series
from tests.study_factory import CT_GRID, STUDY, ct_hu, edit_series


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("volumes") / "ct"
    write_ct_series(ct_hu(), CT_GRID, STUDY, out, contrast=False)
    return out


@pytest.fixture
def ct_copy(ct_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ct_dir, tmp_path / "ct"))


def _load(folder: Path):
    index = index_folder(folder)
    assert len(index.series) == 1
    return load_volume(index.series[0])


def _files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def test_volume_has_the_written_grid_and_values(ct_copy: Path) -> None:
    for n, path in enumerate(_files(ct_copy)):  # file names say nothing about the order
        path.rename(ct_copy / f"x{(n * 7919) % 1000:03d}")
    vol = _load(ct_copy)
    assert vol.array.dtype == np.float32 and vol.array.shape == CT_GRID.shape
    np.testing.assert_allclose(vol.grid.affine, CT_GRID.affine, atol=1e-6)
    np.testing.assert_array_equal(vol.array, ct_hu())
    assert vol.study_uid == STUDY.study_uid and vol.frame_of_reference_uid == STUDY.frame_of_reference_uid
    summary = slice_summary(index_folder(ct_copy).series[0])
    assert summary is not None and summary.spacing_mm == pytest.approx(3.0) and summary.extent_mm == pytest.approx(69.0)


def test_oblique_feet_first_stack(tmp_path: Path) -> None:
    angle = np.deg2rad(20.0)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    grid = Grid(shape=(6, 8, 10), spacing=(1.5, 1.25, 2.0), origin=(10.0, -5.0, 40.0), direction=rot @ np.diag([1.0, -1.0, -1.0]))
    hu = np.arange(np.prod(grid.shape), dtype=np.float32).reshape(grid.shape) % 2000 - 1000
    write_ct_series(hu, grid, STUDY, tmp_path / "ct", contrast=False)
    vol = _load(tmp_path / "ct")
    np.testing.assert_allclose(vol.grid.affine, grid.affine, atol=1e-5)
    np.testing.assert_array_equal(vol.array, hu)


def test_missing_slice_is_an_error(ct_copy: Path) -> None:
    _files(ct_copy)[10].unlink()
    with pytest.raises(InputError, match=r"1 missing slice\(s\) between -3.00 and 3.00 mm") as e:
        _load(ct_copy)
    assert "series 2" in str(e.value) and "(CT, " in str(e.value)


def test_irregular_spacing_is_an_error(ct_copy: Path) -> None:
    def shift(ds: pydicom.Dataset, k: int) -> None:
        if k == 5:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], float(ds.ImagePositionPatient[2]) + 0.4]

    edit_series(ct_copy, shift)
    with pytest.raises(InputError, match="irregular slice spacing"):
        _load(ct_copy)


def test_spacing_within_tolerance_is_accepted(ct_copy: Path) -> None:
    def jitter(ds: pydicom.Dataset, k: int) -> None:
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], float(ds.ImagePositionPatient[2]) + (0.01 if k % 2 else 0.0)]

    edit_series(ct_copy, jitter)
    assert _load(ct_copy).grid.spacing[2] == pytest.approx(3.0, abs=0.01)


def test_duplicate_position_with_same_pixels_is_dropped(ct_copy: Path) -> None:
    ds = pydicom.dcmread(_files(ct_copy)[7])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(ct_copy / "zz-duplicate", enforce_file_format=True)
    vol = _load(ct_copy)
    assert vol.array.shape == CT_GRID.shape
    np.testing.assert_array_equal(vol.array, ct_hu())


def test_duplicate_position_with_other_pixels_is_an_error(ct_copy: Path) -> None:
    ds = pydicom.dcmread(_files(ct_copy)[7])
    ds.SOPInstanceUID = generate_uid()
    pixels = ds.pixel_array.copy()
    pixels[0, 0] += 7
    ds.PixelData = pixels.tobytes()
    ds.save_as(ct_copy / "zz-other", enforce_file_format=True)
    with pytest.raises(InputError, match="two different images at the same position"):
        _load(ct_copy)


def test_inconsistent_orientation_is_an_error(ct_copy: Path) -> None:
    def turn(ds: pydicom.Dataset, k: int) -> None:
        if k == 3:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    edit_series(ct_copy, turn)
    with pytest.raises(InputError, match="different ImageOrientationPatient"):
        _load(ct_copy)


def test_multiframe_and_missing_position_are_errors(ct_copy: Path) -> None:
    first = _files(ct_copy)[0]
    ds = pydicom.dcmread(first)
    del ds.ImagePositionPatient
    ds.save_as(first, enforce_file_format=True)
    with pytest.raises(InputError, match=r"lacks ImagePositionPatient \(0020,0032\)"):
        _load(ct_copy)
    ds.ImagePositionPatient = [0, 0, 0]
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    ds.save_as(first, enforce_file_format=True)
    with pytest.raises(InputError, match="multi-frame"):
        _load(ct_copy)


def test_gantry_tilt_is_corrected(tmp_path: Path) -> None:
    """A rod along z written as a tilted stack (each slice origin one row further in y) comes out straight."""
    grid = Grid(shape=(8, 20, 16), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    hu = np.full(grid.shape, -1000.0, np.float32)
    for k in range(grid.shape[0]):
        hu[k, 12 - k, 5] = 1000.0  # the rod is at y = 12 mm; slice k starts at y = k mm
    write_ct_series(hu, grid, STUDY, tmp_path / "ct", contrast=False)

    def tilt(ds: pydicom.Dataset, k: int) -> None:
        ds.ImagePositionPatient = [0.0, float(k), 2.0 * k]
        ds.GantryDetectorTilt = "26.57"

    edit_series(tmp_path / "ct", tilt)
    vol = _load(tmp_path / "ct")
    np.testing.assert_allclose(vol.grid.direction, np.eye(3), atol=1e-9)
    assert vol.grid.spacing == pytest.approx((1.0, 1.0, 2.0))
    for k in range(grid.shape[0]):
        j, i = np.unravel_index(np.argmax(vol.array[k]), vol.array[k].shape)
        assert (j, i) == (12, 5) and vol.array[k, j, i] == pytest.approx(1000.0), k


def test_pixel_padding_becomes_air(ct_copy: Path) -> None:
    def pad(ds: pydicom.Dataset, k: int) -> None:
        pixels = ds.pixel_array.copy()
        pixels[:2, :] = -2000
        ds.PixelData = pixels.tobytes()
        ds.add_new(0x00280120, "SS", -2000)  # PixelPaddingValue

    edit_series(ct_copy, pad)
    vol = _load(ct_copy)
    assert np.all(vol.array[:, :2, :] == -1024.0) and vol.array.min() == -1024.0
