"""Synthetic CT/PET DICOM writer: validity (dciodvfy, dcmdump), geometry, pixels, vendor headers."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
import pytest

from nstage.geometry import Grid
from nstage.synth.acquisition import suv_bw_factor
from nstage.synth.dicom_writer import (
    PetHeaderTruth,
    vendor_names,
    write_ct_series,
    write_pet_series,
)
from tests.study_factory import ACQ, STUDY

PET_GRID = Grid(shape=(24, 32, 32), spacing=(4.0, 4.0, 4.0), origin=(-62.0, -62.0, -40.0))
CT_GRID = Grid(shape=(10, 40, 48), spacing=(2.5, 2.0, 3.0), origin=(-60.0, -40.0, -30.0))
REQUIRED_VENDORS = {
    "default", "philips-cnts", "ge-private-scantime", "series-time-late", "dose-mbq", "weight-grams",
    "midnight", "datetime-only", "decay-admin", "decay-none", "gml-bw", "gml-lbm", "cm2ml-bsa",
    "philips-cnts-activity-only",
}  # fmt: skip


def _pet_phantom() -> np.ndarray:
    """Warm cylinder (2000 Bq/ml) with a hot sphere (30 kBq/ml), zero outside."""
    k, j, i = np.mgrid[: PET_GRID.shape[0], : PET_GRID.shape[1], : PET_GRID.shape[2]]
    body = (j - 15.5) ** 2 + (i - 15.5) ** 2 < 12.0**2
    act = np.where(body, 2000.0 + 30.0 * k, 0.0)
    act += 28000.0 * np.exp(-((k - 13) ** 2 + (j - 14) ** 2 + (i - 17) ** 2) / (2 * 1.5**2))
    return act.astype(np.float32)


def _ct_phantom() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(-1010.0, 1500.0, CT_GRID.shape).astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The CT (with and without contrast) and the PET in every vendor style."""
    root = tmp_path_factory.mktemp("dicom")
    act, hu = _pet_phantom(), _ct_phantom()
    ct = write_ct_series(hu, CT_GRID, STUDY, root / "ct", contrast=True)
    ct_plain = write_ct_series(hu, CT_GRID, STUDY, root / "ct-plain", contrast=False, series_number=4)
    pet = {v: write_pet_series(act, PET_GRID, STUDY, ACQ, root / v, vendor=v) for v in vendor_names()}
    return {"root": root, "act": act, "hu": hu, "ct": ct, "ct_plain": ct_plain, "pet": pet}


def _read_series(folder: Path) -> list[pydicom.Dataset]:
    """Files of one series in InstanceNumber order."""
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))


def _when(date: str, time: str) -> datetime:
    return datetime.strptime(date + time, "%Y%m%d%H%M%S.%f" if "." in time else "%Y%m%d%H%M%S")


def _series_dirs() -> list[str]:
    return ["ct", "ct-plain", *vendor_names()]


def test_vendor_names_cover_the_manual() -> None:
    assert REQUIRED_VENDORS <= set(vendor_names())


@pytest.mark.parametrize("series", _series_dirs())
def test_dciodvfy_reports_no_error(written: dict, series: str) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not on PATH")
    files = sorted((written["root"] / series).glob("*.dcm"))
    for path in (files[0], files[len(files) // 2], files[-1]):
        res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (res.stdout + res.stderr).splitlines() if "Error" in line]
        assert not errors, f"{path.name}: {errors}"


@pytest.mark.parametrize("series", _series_dirs())
def test_dcmdump_reads(written: dict, series: str) -> None:
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmdump (Debian dcmtk) is not on PATH")
    path = sorted((written["root"] / series).glob("*.dcm"))[-1]
    res = subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and "E:" not in res.stderr, res.stderr
    assert "Used TransferSyntax: Little Endian Explicit" in res.stdout and "PixelData" in res.stdout


def test_ct_and_pet_share_study_and_frame_of_reference(written: dict) -> None:
    ct = pydicom.dcmread(written["ct"][0])
    for vendor in vendor_names():
        pt = pydicom.dcmread(next((written["root"] / vendor).glob("*.dcm")))
        assert pt.StudyInstanceUID == ct.StudyInstanceUID == STUDY.study_uid
        assert pt.FrameOfReferenceUID == ct.FrameOfReferenceUID == STUDY.frame_of_reference_uid
        assert pt.SeriesInstanceUID == written["pet"][vendor].series_instance_uid != ct.SeriesInstanceUID


def test_ct_geometry_and_pixels(written: dict) -> None:
    slices = [pydicom.dcmread(p) for p in written["ct"]]
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
    np.testing.assert_allclose(positions, CT_GRID.slice_positions(), atol=1e-6)
    assert [float(v) for v in slices[0].PixelSpacing] == [2.0, 2.5]
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    expected = np.clip(written["hu"], -1024.0, 3071.0)
    assert np.abs(hu - expected).max() <= 1.0
    ds = slices[0]
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.Manufacturer == "nstage-synth" and ds.PatientName == STUDY.patient_name
    assert float(ds.PatientWeight) == STUDY.weight_kg and ds.PatientAge == f"{STUDY.age_years:03d}Y"
    assert "ContrastBolusAgent" in ds
    assert "ContrastBolusAgent" not in pydicom.dcmread(written["ct_plain"][0])


@pytest.mark.parametrize("vendor", vendor_names())
def test_stored_values_times_truth_factor_give_suv(written: dict, vendor: str) -> None:
    truth: PetHeaderTruth = written["pet"][vendor]
    slices = _read_series(written["root"] / vendor)
    stored = np.stack([d.pixel_array.astype(np.float64) for d in slices])
    suv = stored * np.asarray(truth.stored_to_suv_bw)[:, None, None]
    expected = written["act"].astype(np.float64) * suv_bw_factor(STUDY, ACQ)
    mask = expected > 0.01 * expected.max()
    assert np.abs(suv[mask] / expected[mask] - 1.0).max() < 1e-3
    assert truth.suv_bw_factor == pytest.approx(suv_bw_factor(STUDY, ACQ), rel=1e-12)
    assert [float(d.RescaleSlope) for d in slices] == list(truth.rescale_slopes)
    assert all(float(d.RescaleIntercept) == 0.0 for d in slices)
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
    np.testing.assert_allclose(positions, PET_GRID.slice_positions(), atol=1e-6)
    json.dumps(truth.as_dict())


def _suv_truth(written: dict, slices: list[pydicom.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """(stored x RescaleSlope, true SUVbw) for the voxels above 1 % of the maximum."""
    scaled = np.stack([d.pixel_array * float(d.RescaleSlope) for d in slices])
    suv = written["act"].astype(np.float64) * suv_bw_factor(STUDY, ACQ)
    mask = suv > 0.01 * suv.max()
    return scaled, mask


def _acq_times(slices: list[pydicom.Dataset]) -> list[datetime]:
    return [_when(d.AcquisitionDate, d.AcquisitionTime) for d in slices]


def _check_default(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert s[0].Units == "BQML" and s[0].DecayCorrection == "START" and "SUVType" not in s[0]
    series = _when(s[0].SeriesDate, s[0].SeriesTime)
    assert series == min(_acq_times(s)) == datetime.fromisoformat(t.scan_start) == ACQ.scan_start
    ri = s[0].RadiopharmaceuticalInformationSequence[0]
    assert "RadiopharmaceuticalStartTime" in ri and "RadiopharmaceuticalStartDateTime" in ri
    assert ri.RadionuclideCodeSequence[0].CodeValue == "77004003"
    assert ri.RadiopharmaceuticalCodeSequence[0].CodeValue == "35321007"
    assert float(ri.RadionuclideTotalDose) == ACQ.injected_dose_bq
    assert len({float(d.RescaleSlope) for d in s}) > 1 and all("DecayFactor" in d for d in s)
    assert len(set(_acq_times(s))) > 1 and "DECY" in s[0].CorrectedImage and "ATTN" in s[0].CorrectedImage


def _check_uniform(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert len({float(d.RescaleSlope) for d in s}) == 1


def _check_philips(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert s[0].Units == "CNTS"
    scaled, mask = _suv_truth(w, s)
    suv = w["act"].astype(np.float64) * suv_bw_factor(STUDY, ACQ)
    blocks = [d.private_block(0x7053, "Philips PET Private Group") for d in s]
    if t.vendor == "philips-cnts":
        suv_sf = np.array([float(b[0x00].value) for b in blocks])
        assert s[0][0x7053, 0x1000].value == blocks[0][0x00].value
        assert np.abs((scaled * suv_sf[:, None, None])[mask] / suv[mask] - 1.0).max() < 1e-3
    else:
        assert all(0x00 not in b for b in blocks)
    acsf = np.array([float(b[0x09].value) for b in blocks])
    assert (0x7053, 0x1009) in s[0]
    activity = scaled * acsf[:, None, None]
    assert np.abs(activity[mask] / w["act"][mask] - 1.0).max() < 1e-3  # START: no decay shift


def _check_ge(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    series = _when(s[0].SeriesDate, s[0].SeriesTime)
    assert series > ACQ.scan_start and set(_acq_times(s)) == {series}
    private = s[0].private_block(0x0009, "GEMS_PETD_01")[0x0D].value
    assert s[0][0x0009, 0x100D].value == private
    assert _when(private[:8], private[8:]) == ACQ.scan_start and t.ge_scan_datetime == private


def _check_series_late(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert _when(s[0].SeriesDate, s[0].SeriesTime) > min(_acq_times(s)) == ACQ.scan_start
    assert (0x0009, 0x0010) not in s[0]


def _check_dose_mbq(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    dose = float(s[0].RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose)
    assert dose < 1e4 and dose * 1e6 == pytest.approx(ACQ.injected_dose_bq) and t.dose_unit == "MBq"


def _check_weight_grams(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert float(s[0].PatientWeight) > 1000 and float(s[0].PatientWeight) / 1000 == pytest.approx(STUDY.weight_kg)


def _check_midnight(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    ri = s[0].RadiopharmaceuticalInformationSequence[0]
    assert "RadiopharmaceuticalStartDateTime" not in ri
    assert ri.RadiopharmaceuticalStartTime > s[0].SeriesTime  # clock time: before midnight, scan after
    inj, start = datetime.fromisoformat(t.injection_datetime), datetime.fromisoformat(t.scan_start)
    assert inj.date() < start.date() == _when(s[0].SeriesDate, s[0].SeriesTime).date()
    assert start - inj == ACQ.scan_start - ACQ.injection_datetime and t.time_shift_s != 0


def _check_datetime_only(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    ri = s[0].RadiopharmaceuticalInformationSequence[0]
    assert "RadiopharmaceuticalStartTime" not in ri
    start = ri.RadiopharmaceuticalStartDateTime
    assert _when(start[:8], start[8:]) == ACQ.injection_datetime


def _check_admin(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert s[0].DecayCorrection == "ADMIN" and t.reference_datetime == ACQ.injection_datetime.isoformat()
    scaled, mask = _suv_truth(w, s)
    assert np.abs(scaled[mask] / w["act"][mask]).min() > 1.0  # corrected to an earlier time


def _check_none(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert s[0].DecayCorrection == "NONE" and "DECY" not in s[0].CorrectedImage
    assert all("DecayFactor" not in d for d in s) and len(set(_acq_times(s))) == len(set(t.bed_of_slice)) > 1
    assert all(int(d.ActualFrameDuration) == 120000 for d in s)


def _check_gml_bw(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
    assert s[0].Units == "GML" and s[0].SUVType == "BW"
    scaled, mask = _suv_truth(w, s)
    suv = w["act"].astype(np.float64) * suv_bw_factor(STUDY, ACQ)
    assert np.abs(scaled[mask] / suv[mask] - 1.0).max() < 1e-3


def _normalised(units: str, suv_type: str) -> Callable[[list[pydicom.Dataset], PetHeaderTruth, dict], None]:
    def check(s: list[pydicom.Dataset], t: PetHeaderTruth, w: dict) -> None:
        assert s[0].Units == units and s[0].SUVType == suv_type == t.suv_type
        assert float(s[0].PatientSize) == STUDY.height_m and s[0].PatientSex == STUDY.sex
        scaled, mask = _suv_truth(w, s)
        suv = w["act"].astype(np.float64) * suv_bw_factor(STUDY, ACQ)
        ratio = scaled[mask] / suv[mask]  # normaliser / weight, the same for every voxel
        assert np.ptp(ratio) < 2e-3 * ratio.mean() and abs(ratio.mean() - 1.0) > 0.05
    return check


HEADER_CHECKS: dict[str, Callable[[list[pydicom.Dataset], PetHeaderTruth, dict], None]] = {
    "default": _check_default,
    "uniform-slope": _check_uniform,
    "philips-cnts": _check_philips,
    "philips-cnts-activity-only": _check_philips,
    "ge-private-scantime": _check_ge,
    "series-time-late": _check_series_late,
    "dose-mbq": _check_dose_mbq,
    "weight-grams": _check_weight_grams,
    "midnight": _check_midnight,
    "datetime-only": _check_datetime_only,
    "decay-admin": _check_admin,
    "decay-none": _check_none,
    "gml-bw": _check_gml_bw,
    "gml-lbm": _normalised("GML", "LBM"),
    "gml-lbm-james128": _normalised("GML", "LBMJAMES128"),
    "gml-lbm-janma": _normalised("GML", "LBMJANMA"),
    "gml-ibw": _normalised("GML", "IBW"),
    "cm2ml-bsa": _normalised("CM2ML", "BSA"),
}


@pytest.mark.parametrize("vendor", vendor_names())
def test_vendor_header_fields(written: dict, vendor: str) -> None:
    assert vendor in HEADER_CHECKS, f"no header check for vendor {vendor!r}"
    slices = _read_series(written["root"] / vendor)
    ds = slices[0]
    assert ds.Modality == "PT" and ds.CountsSource == "EMISSION" and list(ds.SeriesType) == ["WHOLE BODY", "IMAGE"]
    assert [int(d.ImageIndex) for d in slices] == list(range(1, len(slices) + 1))
    assert ds.PatientName == STUDY.patient_name and ds.PatientID == STUDY.patient_id
    HEADER_CHECKS[vendor](slices, written["pet"][vendor], written)


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    act, hu = _pet_phantom(), _ct_phantom()
    for run in ("a", "b"):
        write_ct_series(hu, CT_GRID, STUDY, tmp_path / run / "ct", contrast=True)
        for vendor in ("default", "philips-cnts", "midnight"):
            write_pet_series(act, PET_GRID, STUDY, ACQ, tmp_path / run / vendor, vendor=vendor)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dcm"))
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_series_files_are_what_pydicom_writes(written: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer reuses the encoding of what every slice shares; the files stay the bytes that
    Dataset.save_as(enforce_file_format=True) writes for the same datasets, in every header style."""
    import nstage.synth.dicom_writer as writer
    from nstage.synth.dicom_common import save

    monkeypatch.setattr(writer, "save", lambda ds, path, shared=None: save(ds, path))
    act, hu = written["act"], written["hu"]
    write_ct_series(hu, CT_GRID, STUDY, tmp_path / "ct", contrast=True)
    write_ct_series(hu, CT_GRID, STUDY, tmp_path / "ct-plain", contrast=False, series_number=4)
    for v in vendor_names():
        write_pet_series(act, PET_GRID, STUDY, ACQ, tmp_path / v, vendor=v)
    ours = sorted(p.relative_to(written["root"]) for p in written["root"].rglob("*.dcm"))
    assert ours == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.dcm")) and ours
    for rel in ours:
        assert (written["root"] / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_negative_activity_is_stored_signed(tmp_path: Path) -> None:
    act = _pet_phantom() - 500.0
    truth = write_pet_series(act, PET_GRID, STUDY, ACQ, tmp_path, vendor="default")
    slices = _read_series(tmp_path)
    assert truth.pixel_representation == 1 and slices[0].PixelRepresentation == 1
    stored = np.stack([d.pixel_array.astype(np.float64) for d in slices])
    activity = stored * np.asarray(truth.stored_to_activity_bqml)[:, None, None]
    assert np.abs(activity - act).max() <= 0.5 * max(truth.stored_to_activity_bqml) + 1e-6


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown PET vendor style"):
        write_pet_series(_pet_phantom(), PET_GRID, STUDY, ACQ, tmp_path, vendor="siemens-magic")
    with pytest.raises(ValueError, match="does not match grid"):
        write_ct_series(np.zeros((3, 4, 5), np.float32), CT_GRID, STUDY, tmp_path, contrast=False)
