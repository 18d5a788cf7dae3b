"""Studies as hospitals send them: every transfer syntax, enhanced multi-frame objects, derived PET.

- the first small synthetic case re-encoded by independent encoders (dcmtk's dcmcjpeg, dcmcjpls,
  dcmcrle, dcmconv; pydicom's JPEG 2000, JPEG-LS near-lossless and deflate) loads as the
  uncompressed study: identical CT and SUV volumes for lossless syntaxes, within the encoder's bound
  for lossy ones;
- the same study as Legacy Converted Enhanced CT / PET (highdicom.legacy) loads identically, and an
  enhanced object with a missing frame is refused like a single-frame series with a missing slice;
- Enhanced PET module attributes (Rescale Type, Decay Corrected, Attenuation Corrected, frame
  durations) become the single-frame attributes the SUV rules read;
- a PET exported DERIVED\\SECONDARY in Units GML is chosen when it is the only PET, after an
  ORIGINAL Bq/ml PET otherwise, and its SUV equals the stored values times the rescale slope;
- a refused series is named with the condition it fails.

The whole pipeline on these studies (`nstage run`, app.py) is in tests/test_run_encodings.py and tests/test_app.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from nstage.errors import InputError
from nstage.ingest.dicom_index import index_folder
from nstage.ingest.multiframe import frame_headers
from nstage.ingest.series_selection import select_ct_pet
from nstage.ingest.study import load_pet_series, load_study
from nstage.ingest.suv import suv_factors
from tests.encodings import ENCODINGS, derived_suv_pet, legacy_enhanced_study, reencode_study


@pytest.fixture(scope="module")
def source(small_cohort: Path) -> Path:
    return small_cohort / "case_0000" / "dicom"


@pytest.fixture(scope="module")
def reference(source: Path):
    return load_study(source)


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_transfer_syntax_loads_as_the_uncompressed_study(name: str, source: Path, reference, tmp_path: Path) -> None:
    study = load_study(reencode_study(source, tmp_path / name, name))
    bound = ENCODINGS[name].max_stored_error
    assert np.array_equal(study.ct.grid.affine, reference.ct.grid.affine) and np.array_equal(study.pet.grid.affine, reference.pet.grid.affine)
    assert study.pet.suv.scale_factors == reference.pet.suv.scale_factors
    ct_error, suv_error = np.abs(study.ct.array - reference.ct.array), np.abs(study.pet.array - reference.pet.array)
    if bound == 0.0:
        assert ct_error.max() == 0.0 and suv_error.max() == 0.0
        return
    slope = max(float(pydicom.dcmread(p, stop_before_pixels=True).RescaleSlope) for p in (source / "pet").iterdir())  # per slice
    suv_per_stored = slope * max(reference.pet.suv.scale_factors)
    if np.isfinite(bound):  # JPEG-LS near-lossless: no value moves by more than NEAR stored units
        assert 0 < ct_error.max() <= bound and suv_error.max() <= bound * suv_per_stored + 1e-6  # (float32 rounding)
    else:  # JPEG 2000 lossy at 90 dB PSNR (of the 16-bit range): small errors, none that moves a reading
        assert 0 < ct_error.mean() < 2.0 and suv_error.max() < 0.02 and abs(study.pet.array.max() - reference.pet.array.max()) < 0.01


def test_legacy_converted_enhanced_ct_and_pet_load_as_the_single_frame_study(source: Path, reference, tmp_path: Path) -> None:
    root = legacy_enhanced_study(source, tmp_path / "enhanced")
    assert len(list(root.iterdir())) == 2  # one multi-frame object per series
    index = index_folder(root)
    assert sorted(len(s.instances) for s in index.series) == sorted(len(list((source / m).iterdir())) for m in ("ct", "pet"))
    study = load_study(root)
    assert np.array_equal(study.ct.array, reference.ct.array) and np.array_equal(study.ct.grid.affine, reference.ct.grid.affine)
    assert np.array_equal(study.pet.array, reference.pet.array) and np.array_equal(study.pet.grid.affine, reference.pet.grid.affine)
    assert study.pet.suv.as_dict() == reference.pet.suv.as_dict()  # per-frame timing, decay and dose read as from the slices


def test_enhanced_object_with_a_missing_frame_is_refused_as_a_gap(source: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(source, cut)
    ct_files = sorted((cut / "ct").iterdir())
    ct_files[len(ct_files) // 2].unlink()
    root = legacy_enhanced_study(cut, tmp_path / "enhanced")
    with pytest.raises(InputError, match=r"1 missing slice\(s\)"):
        load_study(root)


def _enhanced_pet() -> Dataset:
    """An Enhanced PET-like header: module flags instead of the single-frame attributes."""
    ds = Dataset()
    ds.Modality, ds.NumberOfFrames, ds.Rows, ds.Columns = "PT", 2, 4, 4
    ds.DecayCorrected, ds.AttenuationCorrected, ds.ScatterCorrected = "YES", "YES", "NO"
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "0.5", "0", "BQML"
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(2):
        groups, content, position, factors = Dataset(), Dataset(), Dataset(), Dataset()
        content.FrameAcquisitionDateTime, content.FrameAcquisitionDuration = f"2025060209{k:02d}00", 120000.0
        position.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
        factors.DecayFactor = "1.01"
        groups.FrameContentSequence, groups.PlanePositionSequence, groups.PETFrameCorrectionFactorsSequence = [content], [position], [factors]
        frames.append(groups)
    ds.PerFrameFunctionalGroupsSequence = frames
    return ds


def test_enhanced_pet_module_attributes_become_the_single_frame_ones() -> None:
    first, second = frame_headers(_enhanced_pet())
    assert first.Units == "BQML" and first.DecayCorrection == "START" and list(first.CorrectedImage) == ["ATTN", "DECY"]
    assert float(first.RescaleSlope) == 0.5 and first.ActualFrameDuration == 120000 and float(first.DecayFactor) == 1.01
    assert first.AcquisitionDateTime == "20250602090000" and second.AcquisitionDateTime == "20250602090100"
    assert [float(v) for v in second.ImagePositionPatient] == [0.0, 0.0, 4.0] and "NumberOfFrames" not in second


def test_enhanced_object_whose_groups_miss_frames_is_a_broken_file(tmp_path: Path) -> None:
    ds = _enhanced_pet()
    ds.NumberOfFrames = 3
    with pytest.raises(Exception, match="2 item"):
        frame_headers(ds)


def test_derived_suv_pet_reads_its_stored_values_and_is_used_when_alone(source: Path, reference, tmp_path: Path) -> None:
    root = tmp_path / "derived"
    shutil.copytree(source / "ct", root / "ct")
    derived_suv_pet(source, root / "pet_suv")
    pet = load_study(root).pet
    assert pet.suv.units == "GML" and pet.suv.method.startswith("stored BW SUV")
    stored = np.stack([pydicom.dcmread(f).pixel_array * float(pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope) for f in pet.files])
    assert np.allclose(pet.array, stored, rtol=1e-3, atol=0)  # SUV = stored x rescale (0.1 %)
    assert np.abs(pet.array - reference.pet.array).max() <= 1e-3 * reference.pet.array.max()  # the export kept the SUV

    shutil.copytree(source / "pet", root / "pet")  # beside the ORIGINAL Bq/ml PET, that one is preferred
    chosen = select_ct_pet(index_folder(root)).pet
    assert chosen.series_uid == reference.pet.series_uid
    assert load_pet_series(root / "pet_suv").suv.units == "GML"  # `nstage suv` converts the PT series it is given


def test_refused_pet_series_are_named_with_the_condition_they_fail(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "mip"
    shutil.copytree(source / "ct", root / "ct")
    shutil.copytree(source / "pet", root / "pet")
    for path in (root / "pet").iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = ["DERIVED", "SECONDARY", "MIP"]
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match=r"PT series not meeting the PET conditions: series \d+ .*ImageType is \['DERIVED', 'SECONDARY', 'MIP'\]: it has MIP"):
        load_study(root)


def test_suv_of_a_derived_export_needs_no_dose_or_weight(source: Path, tmp_path: Path) -> None:
    derived_suv_pet(source, tmp_path / "pet_suv", drop=("PatientWeight", "RadiopharmaceuticalInformationSequence"))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((tmp_path / "pet_suv").iterdir())]
    assert suv_factors(headers).scale_factors == (1.0,) * len(headers)
