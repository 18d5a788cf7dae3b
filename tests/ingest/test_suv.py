"""SUV rules of the SUV manual, one by one on in-memory headers, then every generator vendor style
on a synthetic case, then `nstage suv` end to end."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset

from nstage.cli import main
from nstage.errors import InputError
from nstage.geometry import LPS_TO_RAS
from nstage.ingest.study import load_pet_series
from nstage.ingest.suv import (
    SUV_TYPES,
    body_mass_kg,
    body_surface_m2,
    normaliser,
    suv_factors,
)
from nstage.synth import pet_vendors
from nstage.synth.acquisition import suv_bw_factor
from nstage.synth.dicom_writer import PetHeaderTruth, vendor_names, write_pet_series
from tests.study_factory import (
    DOSE,
    F18,
    PET_GRID,
    W,
    case_study_and_acquisition,
    case_truth_suv,
    edit_series,
    isotope,
    pet_activity,
    pet_header,
    suv_factor,
    write_phantom_study,
)

REPO = Path(__file__).resolve().parents[2]
LAMBDA = math.log(2.0) / F18
BASE_FACTOR = W * 1000.0 / (DOSE * math.exp(-LAMBDA * 3600.0))  # injection 10:00, scan 11:00


def factor(*headers: Dataset, suv_type: str = "bw") -> float:
    info = suv_factors(list(headers), suv_type)
    return float(info.scale_factors[0])


# --- body-size normalisers ----------------------------------------------------------------------


@pytest.mark.parametrize("sex", ["M", "F", "O"])
def test_normalisers_agree_with_the_generator(sex: str) -> None:
    for kind in ("BW", "LBM", "LBMJAMES128", "LBMJANMA", "IBW", "BSA"):
        for w, h in ((55.0, 1.58), (82.5, 1.79), (120.0, 1.70)):
            assert normaliser(kind, w, h, sex) == pytest.approx(pet_vendors.normaliser(kind, w, h, sex), rel=1e-12), (kind, w, h)


def test_normalisers_known_values() -> None:
    assert body_mass_kg("LBMJAMES128", 80.0, 1.80, "M") == pytest.approx(88.0 - 128.0 * (80 / 180) ** 2)  # 62.72 kg
    assert body_mass_kg("LBM", 80.0, 1.80, "M") == pytest.approx(88.0 - 120.0 * (80 / 180) ** 2)
    assert body_mass_kg("LBMJANMA", 80.0, 1.80, "M") == pytest.approx(61.73, abs=0.01)
    assert body_mass_kg("IBW", 60.0, 1.65, "F") == pytest.approx(57.33)
    assert body_mass_kg("IBW", 60.0, 1.65, "O") == pytest.approx((57.33 + 48.0 + 1.06 * 13.0) / 2)
    assert body_surface_m2(80.0, 1.80) == pytest.approx(1.996, abs=0.002)


# --- decay correction and times -----------------------------------------------------------------


def test_bqml_start_uses_series_time() -> None:
    info = suv_factors([pet_header()])
    assert info.scale_factors[0] == pytest.approx(BASE_FACTOR, rel=1e-9)
    assert info.reference_time_source == "SeriesDate/SeriesTime" and info.units == "BQML" and info.decay_correction == "START"
    assert info.notes == () and info.scale_factor == info.scale_factors[0]


def test_ge_private_scan_datetime_wins_over_a_late_series_time() -> None:
    ds = pet_header(SeriesTime="123000", AcquisitionTime="123000")
    ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x0D, "DT", "20250101110000")
    info = suv_factors([ds])
    assert info.scale_factors[0] == pytest.approx(BASE_FACTOR, rel=1e-9) and "0009,100D" in str(info.reference_time_source)


def test_late_series_time_back_computes_the_reference() -> None:
    t = 180.0  # bed 2 starts 3 min after bed 1; FrameReferenceTime counts from the true start
    t_ave = math.log(LAMBDA * t / (1 - math.exp(-LAMBDA * t))) / LAMBDA
    beds = [pet_header(SeriesTime="114500", AcquisitionTime=acq, ActualFrameDuration=180000, FrameReferenceTime=f"{(start + t_ave) * 1000:.3f}")
            for acq, start in (("110000", 0.0), ("110300", 180.0))]
    info = suv_factors(beds)
    assert info.scale_factors == pytest.approx((BASE_FACTOR, BASE_FACTOR), rel=1e-6)
    assert "back-computed" in str(info.reference_time_source)
    no_frame_ref = [pet_header(SeriesTime="114500", AcquisitionTime=acq, FrameReferenceTime=None) for acq in ("110300", "110000")]
    info = suv_factors(no_frame_ref)
    assert info.scale_factors[0] == pytest.approx(BASE_FACTOR, rel=1e-9) and info.reference_time_source == "earliest AcquisitionDate/AcquisitionTime"
    assert any("FrameReferenceTime is unusable" in n for n in info.notes)


def test_decay_none_uses_the_manual_formula_per_slice() -> None:
    slices = [pet_header(DecayCorrection="NONE", AcquisitionTime=t, ActualFrameDuration=300000) for t in ("110000", "110500")]
    info = suv_factors(slices)
    lt = LAMBDA * 300.0
    for f, minutes in zip(info.scale_factors, (60, 65)):
        assert f == pytest.approx(W * 1000 / DOSE * lt / (1 - math.exp(-lt)) * math.exp(LAMBDA * minutes * 60), rel=1e-9)
    assert isinstance(info.scale_factor, list) and len(info.scale_factor) == 2


def test_decay_admin_needs_no_times() -> None:
    ds = pet_header(DecayCorrection="ADMIN", iso_RadiopharmaceuticalStartTime=None, iso_RadiopharmaceuticalStartDateTime=None)
    assert factor(ds) == pytest.approx(W * 1000 / DOSE, rel=1e-12)


def test_injection_before_midnight_with_time_only() -> None:
    ds = pet_header(StudyDate="20250102", SeriesDate="20250102", AcquisitionDate="20250102", SeriesTime="003000", AcquisitionTime="003000",
                    iso_RadiopharmaceuticalStartTime="233000", iso_RadiopharmaceuticalStartDateTime=None)
    info = suv_factors([ds])
    assert info.scale_factors[0] == pytest.approx(BASE_FACTOR, rel=1e-9) and info.injection_time == "2025-01-01T23:30:00"
    assert any("midnight" in n for n in info.notes)


def test_datetime_only_and_time_only_agree() -> None:
    assert factor(pet_header(iso_RadiopharmaceuticalStartTime=None)) == pytest.approx(BASE_FACTOR, rel=1e-12)
    assert factor(pet_header(iso_RadiopharmaceuticalStartDateTime=None)) == pytest.approx(BASE_FACTOR, rel=1e-12)


def test_start_datetime_on_another_day_falls_back_to_the_start_time() -> None:
    info = suv_factors([pet_header(iso_RadiopharmaceuticalStartDateTime="19000101100000")])
    assert info.scale_factors[0] == pytest.approx(BASE_FACTOR, rel=1e-12) and any("anonymiser" in n for n in info.notes)
    with pytest.raises(InputError, match="implausible"):
        suv_factors([pet_header(iso_RadiopharmaceuticalStartDateTime="19000101100000", iso_RadiopharmaceuticalStartTime=None)])


def test_half_life_from_the_header_or_the_radionuclide_code() -> None:
    ga = Dataset()
    ga.CodeValue, ga.CodingSchemeDesignator, ga.CodeMeaning = "C-131A3", "SRT", "^68^Gallium"
    lam = math.log(2.0) / 4057.7
    with_header = pet_header(iso_RadionuclideHalfLife="4057.7", iso_RadionuclideCodeSequence=[ga])
    assert factor(with_header) == pytest.approx(W * 1000 / (DOSE * math.exp(-lam * 3600.0)), rel=1e-9)
    from_code = suv_factors([pet_header(iso_RadionuclideHalfLife=None, iso_RadionuclideCodeSequence=[ga])])
    assert from_code.half_life_s == pytest.approx(4062.6) and any("Ga-68" in n for n in from_code.notes)
    ga.CodeValue, ga.CodeMeaning = "99999", "Gallium-68"  # an unknown code with a readable meaning
    assert suv_factors([pet_header(iso_RadionuclideHalfLife=None, iso_RadionuclideCodeSequence=[ga])]).half_life_s == pytest.approx(4062.6)


# --- units --------------------------------------------------------------------------------------


def test_dose_in_mbq_weight_in_grams_height_in_cm_are_corrected() -> None:
    info = suv_factors([pet_header(iso_RadionuclideTotalDose="368.08", PatientWeight="70000", PatientSize="175")], "lbm")
    expected = BASE_FACTOR * body_mass_kg("LBMJAMES128", 70.0, 1.75, "M") / 70.0
    assert info.scale_factors[0] == pytest.approx(expected, rel=1e-9)
    assert len(info.notes) == 3 and info.weight_kg == 70.0 and info.height_m == 1.75


@pytest.mark.parametrize("suv_type", list(SUV_TYPES))
def test_output_types_scale_suvbw_by_their_normaliser(suv_type: str) -> None:
    kind = SUV_TYPES[suv_type]
    for sex in ("M", "F", "O"):
        got = factor(pet_header(PatientSex=sex), suv_type=suv_type)
        assert got == pytest.approx(BASE_FACTOR * normaliser(kind, 70.0, 1.75, sex) / 70000.0, rel=1e-9)
    unit = suv_factors([pet_header()], suv_type).suv_units
    assert unit == ("cm2/ml" if suv_type == "bsa" else "g/ml")


@pytest.mark.parametrize("suv_type", ["BW", "LBM", "LBMJAMES128", "LBMJANMA", "IBW", None])
def test_gml_is_converted_back_to_suvbw(suv_type: str | None) -> None:
    info = suv_factors([pet_header(Units="GML", SUVType=suv_type, PatientSex="O")])
    kind = suv_type or "BW"
    assert info.scale_factors[0] == pytest.approx(70000.0 / normaliser(kind, 70.0, 1.75, "O"), rel=1e-12)
    assert (suv_type is None) == any("without SUVType" in n for n in info.notes)


def test_cm2ml_is_body_surface_area() -> None:
    expected = 70000.0 / (body_surface_m2(70.0, 1.75) * 1e4)
    assert factor(pet_header(Units="CM2ML", SUVType="BSA")) == pytest.approx(expected, rel=1e-12)
    assert factor(pet_header(Units="CM2ML")) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InputError, match="Units GML with SUVType"):
        suv_factors([pet_header(Units="GML", SUVType="BSA")])


def test_philips_counts() -> None:
    def philips(ds: Dataset, suv_sf: str | None, acsf: str | None) -> Dataset:
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        if suv_sf is not None:
            block.add_new(0x00, "DS", suv_sf)
        if acsf is not None:
            block.add_new(0x09, "DS", acsf)
        return ds

    slices = [philips(pet_header(Units="CNTS"), sf, "2.5") for sf in ("0.0005", "0.0006")]
    info = suv_factors(slices)
    assert info.scale_factors == pytest.approx((0.0005, 0.0006)) and "7053,1000" in info.method
    assert factor(philips(pet_header(Units="CNTS"), "0", "2.5")) == pytest.approx(2.5 * BASE_FACTOR, rel=1e-9)
    # no scale factor: counts / frame s -> CPS; no DCAL: x DoseCalibrationFactor / voxel ml (0.064 ml)
    cps = pet_header(Units="CNTS", DoseCalibrationFactor="1.5")
    assert factor(cps) == pytest.approx(BASE_FACTOR * 1.5 / 300.0 / 0.064, rel=1e-9)
    dcal = pet_header(Units="CPS", CorrectedImage=["ATTN", "DCAL", "DECY"])
    assert factor(dcal) == pytest.approx(BASE_FACTOR / 0.064, rel=1e-9)
    with pytest.raises(InputError, match=r"DoseCalibrationFactor \(0054,1322\)"):
        suv_factors([pet_header(Units="CNTS")])


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PatientWeight": None}, r"PatientWeight \(0010,1030\) is missing"),
        ({"PatientWeight": "0"}, r"PatientWeight \(0010,1030\) is 0"),
        ({"PatientWeight": "0.2"}, r"implausible 0.2 kg"),
        ({"iso_RadionuclideTotalDose": None}, r"RadionuclideTotalDose \(0018,1074\).* is missing"),
        ({"iso_RadiopharmaceuticalStartTime": None, "iso_RadiopharmaceuticalStartDateTime": None}, r"injection time missing.*\(0018,1078\).*\(0018,1072\)"),
        ({"RadiopharmaceuticalInformationSequence": None}, r"RadiopharmaceuticalInformationSequence \(0054,0016\) is missing"),
        ({"Units": "PROPCPS"}, r"Units \(0054,1001\) PROPCPS cannot be converted"),
        ({"Units": None}, r"Units \(0054,1001\) is missing"),
        ({"DecayCorrection": None}, r"DecayCorrection \(0054,1102\) is missing"),
        ({"RescaleIntercept": "5"}, r"RescaleIntercept \(0028,1052\) is 5"),
        ({"iso_RadiopharmaceuticalStartDateTime": "20250101120000", "iso_RadiopharmaceuticalStartTime": None}, r"injection .* is after the scan"),
        ({"SeriesDate": "20250301", "AcquisitionDate": "20250301", "iso_RadiopharmaceuticalStartTime": None}, r"h between injection and scan is implausible"),
        ({"iso_RadionuclideHalfLife": None, "iso_RadionuclideCodeSequence": None}, r"RadionuclideHalfLife \(0018,1075\) is missing"),
        ({"PatientWeight": b"seventy"}, r"PatientWeight \(0010,1030\) is 'seventy', not a number"),
        ({"SeriesTime": b"25h", "AcquisitionTime": b"11h"}, r"SeriesTime \(0008,0031\) is '25h', not a DICOM time"),
    ],
)
def test_missing_or_absurd_values_are_named(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        suv_factors([pet_header(**change)], label="series 9 PET")
    assert str(e.value).startswith("series 9 PET: ")


def test_height_is_needed_only_where_used() -> None:
    assert factor(pet_header(PatientSize=None)) == pytest.approx(BASE_FACTOR, rel=1e-12)
    with pytest.raises(InputError, match=r"PatientSize \(0010,1020\).*--suv-type bw"):
        suv_factors([pet_header(PatientSize=None)], "lbm")
    with pytest.raises(InputError, match="unknown SUV type"):
        suv_factors([pet_header()], "suvpeak")


# --- every vendor style of the generator, on a synthetic case ------------------------------------


@pytest.fixture(scope="module")
def vendor_series(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, PetHeaderTruth]]:
    """The true SUV of a synthetic case (shared small_cohort) written as a PET series in every vendor style."""
    case_dir = small_cohort / "case_0000"
    suv, grid = case_truth_suv(case_dir)
    study, acq = case_study_and_acquisition(case_dir)
    root = tmp_path_factory.mktemp("vendors")
    return {v: (root / v, write_pet_series(suv / suv_bw_factor(study, acq), grid, study, acq, root / v, vendor=v)) for v in vendor_names()}


@pytest.mark.parametrize("vendor", vendor_names())
def test_every_vendor_style_gives_the_true_suv(small_cohort: Path, vendor_series: dict, vendor: str) -> None:
    folder, truth = vendor_series[vendor]
    suv, grid = case_truth_suv(small_cohort / "case_0000")
    pet = load_pet_series(folder)
    np.testing.assert_allclose(pet.grid.affine, grid.affine, atol=1e-4)
    # the per-slice factor is exact (to the header's decimal precision) ...
    per_stored = np.asarray(pet.suv.scale_factors) * np.asarray(truth.rescale_slopes)
    np.testing.assert_allclose(per_stored, truth.stored_to_suv_bw, rtol=1e-6)
    # ... so what remains against the true SUV is the 16-bit quantisation of the written series
    hot = suv > 0.01 * suv.max()
    worst = float(np.abs(pet.array[hot] / suv[hot] - 1.0).max())
    assert worst < 1e-3, f"{vendor}: max relative error {worst:.2e}"


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_study(tmp_path_factory.mktemp("suvcli"), ct=False)


def test_cli_writes_nifti_and_prints_json(phantom: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "suv.nii.gz"
    res = subprocess.run([sys.executable, "-m", "nstage.cli", "suv", str(phantom / "pet"), "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert {"suv_type", "units", "decay_correction", "scale_factor"} <= set(summary)
    assert summary["suv_type"] == "bw" and summary["units"] == "BQML" and summary["decay_correction"] == "START"
    assert summary["scale_factor"] == pytest.approx(suv_factor(), rel=1e-9)  # one factor: decay to the series start
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, LPS_TO_RAS @ PET_GRID.affine, atol=1e-5)
    suv = np.transpose(np.asarray(img.dataobj), (2, 1, 0))
    truth = pet_activity() * suv_factor()
    assert np.abs(suv - truth).max() <= 1e-3 * truth.max()
    assert [p.name for p in out.parent.iterdir()] == ["suv.nii.gz"]  # no temporary file left


def test_cli_scale_factor_is_a_list_for_per_slice_decay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_pet_series(pet_activity(), PET_GRID, *_phantom_study_acq(), tmp_path / "pet", vendor="decay-none")
    assert main(["suv", str(tmp_path / "pet"), "--out", str(tmp_path / "s.nii.gz"), "--suv-type", "lbm"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert isinstance(summary["scale_factor"], list) and len(summary["scale_factor"]) == PET_GRID.shape[0]
    assert summary["suv_type"] == "lbm" and summary["decay_correction"] == "NONE"


def _phantom_study_acq() -> tuple:
    from tests.study_factory import ACQ, STUDY

    return STUDY, ACQ


def _break_weight(pet: Path) -> None:
    edit_series(pet, lambda ds, k: delattr(ds, "PatientWeight"))


def _break_dose(pet: Path) -> None:
    edit_series(pet, lambda ds, k: delattr(isotope(ds), "RadionuclideTotalDose"))


def _break_injection(pet: Path) -> None:
    def drop(ds: Dataset, k: int) -> None:
        del isotope(ds).RadiopharmaceuticalStartTime
        del isotope(ds).RadiopharmaceuticalStartDateTime

    edit_series(pet, drop)


def _break_attenuation(pet: Path) -> None:
    edit_series(pet, lambda ds, k: setattr(ds, "CorrectedImage", ["NORM", "DTIM", "DECY", "RAN"]))


def _truncate(pet: Path) -> None:
    victim = sorted(pet.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:-64])


def _not_dicom(pet: Path) -> None:
    shutil.rmtree(pet)
    pet.mkdir()
    (pet / "readme.txt").write_text("no images here")
    (pet / "image.dcm").write_bytes(b"\x89PNG\r\n" + bytes(200))


def _empty(pet: Path) -> None:
    shutil.rmtree(pet)
    pet.mkdir()


def _gap(pet: Path) -> None:
    sorted(pet.iterdir())[6].unlink()


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_break_weight, r"PatientWeight \(0010,1030\) is missing"),
        (_break_dose, r"RadionuclideTotalDose \(0018,1074\)"),
        (_break_injection, r"injection time missing"),
        (_break_attenuation, r"no attenuation-corrected PET.*NAC"),
        (_truncate, r"damaged DICOM file.*PT03_0005.dcm: pixel data truncated"),
        (_not_dicom, r"no DICOM image files in .* \(2 other file\(s\)\)"),
        (_empty, r"no DICOM image files in .* \(0 other file\(s\)\)"),
        (_gap, r"missing slice"),
    ],
    ids=["no-weight", "no-dose", "no-injection-time", "nac-only", "truncated", "not-dicom", "empty", "gap"],
)
def test_cli_bad_input_is_one_error_line_and_no_output(phantom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], breaks, message: str) -> None:
    pet = Path(shutil.copytree(phantom / "pet", tmp_path / "pet"))
    breaks(pet)
    out = tmp_path / "out" / "suv.nii.gz"
    assert main(["suv", str(pet), "--out", str(out)]) != 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and captured.out == "", captured.err
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
