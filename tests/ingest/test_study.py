"""Study loading: series selection, CT + SUV PET volumes, PET into CT space, and bad studies."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from nstage.errors import InputError
from nstage.geometry import Grid, load_nifti
from nstage.ingest.dicom_index import index_folder
from nstage.ingest.series_selection import load_rules, matches, select_ct_pet
from nstage.ingest.study import Study, load_ct_volume, load_study
from nstage.synth.dicom_writer import write_ct_series, write_pet_series
from tests.study_factory import (
    ACQ,
    CT_GRID,
    HOT_BQML,
    HOT_LPS,
    PET_GRID,
    STUDY,
    case_truth_suv,
    edit_series,
    isotope,
    pet_activity,
    suv_factor,
    write_phantom_study,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom_study(tmp_path_factory.mktemp("study") / "study")


@pytest.fixture
def study_copy(phantom: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(phantom, tmp_path / "study"))


# --- loading ------------------------------------------------------------------------------------


def test_synthetic_case_loads_on_its_true_grids_with_its_true_suv(small_cohort: Path) -> None:
    case = small_cohort / "case_0000"
    study = load_study(case / "dicom")
    _, station_grid = load_nifti(case / "truth_stations.nii.gz")  # written on the CT grid
    np.testing.assert_allclose(study.ct.grid.affine, station_grid.affine, atol=1e-4)
    assert study.ct.grid.shape == station_grid.shape
    assert -1024.0 <= study.ct.array.min() and study.ct.array.max() <= 3071.0 and np.median(study.ct.array) < -500  # air around the body
    suv, pet_grid = case_truth_suv(case)
    np.testing.assert_allclose(study.pet.grid.affine, pet_grid.affine, atol=1e-4)
    hot = suv > 0.01 * suv.max()
    assert np.abs(study.pet.array[hot] / suv[hot] - 1).max() < 1e-3
    assert study.ct.study_uid == study.pet.study_uid and study.ct.frame_of_reference_uid == study.pet.frame_of_reference_uid
    assert study.pet.suv.suv_type == "bw" and study.ct.array.dtype == study.pet.array.dtype == np.float32
    ct = load_ct_volume(case / "dicom")
    assert ct.series_uid == study.ct.series_uid and np.array_equal(ct.array, study.ct.array)
    assert load_ct_volume(case / "dicom" / "ct").series_uid == study.ct.series_uid


def test_hot_point_lands_on_its_ct_voxel(phantom: Path) -> None:
    study = load_study(phantom)
    assert study.pet.array.max() == pytest.approx(HOT_BQML * suv_factor(), rel=1e-4)
    on_ct = study.pet_on_ct_grid()
    assert on_ct.shape == CT_GRID.shape and on_ct.dtype == np.float32
    k, j, i = np.unravel_index(np.argmax(on_ct), on_ct.shape)
    assert (i, j, k) == (12, 19, 10)  # CT voxel whose centre is HOT_LPS
    np.testing.assert_allclose(study.ct.grid.index_to_lps(np.array([i, j, k])), HOT_LPS, atol=1e-6)
    assert on_ct[k, j, i] == pytest.approx(study.pet.array.max(), rel=1e-5)
    nearest = study.pet_on_ct_grid(order=0)  # half-voxel ties: the hot PET voxel covers 2 x 2 x 2 CT voxel centres
    hot = np.argwhere(nearest == nearest.max())
    assert nearest[k, j, i] == nearest.max() and len(hot) <= 8
    assert np.abs(study.ct.grid.index_to_lps(hot[:, ::-1]) - HOT_LPS).max() <= 2.0  # within the PET voxel (4 mm)


def test_hot_point_through_a_shifted_and_flipped_ct(tmp_path: Path) -> None:
    """PET into a CT grid with another origin, spacing and a flipped row axis: still the right voxel."""
    ct_grid = Grid(shape=(30, 36, 30), spacing=(2.0, 1.5, 2.5), origin=(-50.0, 40.0, -25.0), direction=np.diag([1.0, -1.0, 1.0]))
    write_phantom_study(tmp_path, ct_grid=ct_grid)
    study = load_study(tmp_path)
    on_ct = study.pet_on_ct_grid()
    k, j, i = np.unravel_index(np.argmax(on_ct), on_ct.shape)
    # the loaded grid runs along the slice normal (row x column = -z here), so k counts downwards
    np.testing.assert_allclose(study.ct.grid.direction, np.diag([1.0, -1.0, -1.0]), atol=1e-9)
    assert (i, j, k) == (10, 28, 19)  # (-50 + 2 i, 40 - 1.5 j, 47.5 - 2.5 k) = HOT_LPS
    np.testing.assert_allclose(study.ct.grid.index_to_lps(np.array([i, j, k])), HOT_LPS, atol=1e-6)


def test_study_and_volume_dataclasses_are_frozen(phantom: Path) -> None:
    study = load_study(phantom)
    assert isinstance(study, Study)
    with pytest.raises(AttributeError):
        study.ct.description = "x"  # type: ignore[misc]
    assert study.ct.description == "CT low dose, no contrast" and study.pet.description == "PET AC FDG (default)"


# --- selection ----------------------------------------------------------------------------------


def test_selection_prefers_thin_thorax_ct_and_attenuation_corrected_pet(tmp_path: Path) -> None:
    write_phantom_study(tmp_path)  # CT: 24 x 3 mm = 69 mm, too short for a thorax
    thorax_thick = Grid(shape=(50, 40, 48), spacing=(2.5, 2.0, 5.0), origin=(-60.0, -40.0, -120.0))
    thorax_thin = replace(thorax_thick, shape=(100, 40, 48), spacing=(2.5, 2.0, 2.5))
    write_ct_series(np.zeros(thorax_thick.shape, np.float32), thorax_thick, STUDY, tmp_path / "ct5", contrast=True, series_number=5)
    write_ct_series(np.zeros(thorax_thin.shape, np.float32), thorax_thin, STUDY, tmp_path / "ct6", contrast=False, series_number=6)
    write_pet_series(pet_activity(), PET_GRID, STUDY, ACQ, tmp_path / "nac", vendor="uniform-slope", series_number=7)
    edit_series(tmp_path / "nac", lambda ds, k: setattr(ds, "CorrectedImage", ["NORM", "DECY"]))
    chosen = select_ct_pet(index_folder(tmp_path))
    assert chosen.ct.first.SeriesNumber == 6 and chosen.pet.first.SeriesNumber == 3


def test_selection_rules_follow_the_sdk_semantics(phantom: Path) -> None:
    index = index_folder(phantom)
    ct, pet = index.by_modality("CT")[0], index.by_modality("PT")[0]
    rules = load_rules()
    ct_rule = next(s["conditions"] for s in rules["selections"] if s["name"] == "CT")
    assert matches(ct_rule, ct) and not matches(ct_rule, pet)
    assert matches({"ImageType": ["original", "!derived"], "SliceThickness": [2, 4], "SeriesNumber": [1, ">"]}, ct)
    assert not matches({"ImageOrientationPatient": "Sagittal"}, ct) and matches({"ImageOrientationPatient": "axial"}, ct)
    assert not matches({"GantryDetectorTilt": "0"}, ct)  # the SDK treats a zero value as missing
    assert matches({"StudyDescription": "(?i)synthetic", "SeriesDescription": "", "Modality": "ct"}, ct)


# --- bad studies --------------------------------------------------------------------------------


def _only(folder: str):
    def keep(root: Path) -> None:
        for sub in ("ct", "pet"):
            if sub != folder:
                shutil.rmtree(root / sub)

    return keep


def _pet_nac(root: Path) -> None:
    edit_series(root / "pet", lambda ds, k: setattr(ds, "CorrectedImage", ["NORM", "DTIM", "DECY", "RAN"]))


def _other_study(root: Path) -> None:
    edit_series(root / "pet", lambda ds, k: setattr(ds, "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.777"))


def _other_frame(root: Path) -> None:
    edit_series(root / "pet", lambda ds, k: setattr(ds, "FrameOfReferenceUID", "1.2.826.0.1.3680043.8.498.778"))


def _no_dicom(root: Path) -> None:
    for sub in ("ct", "pet"):
        shutil.rmtree(root / sub)
    (root / "scan.dcm").write_text("plain text, not DICOM")


def _empty(root: Path) -> None:
    for sub in ("ct", "pet"):
        shutil.rmtree(root / sub)


def _ct_gap(root: Path) -> None:
    sorted((root / "ct").iterdir())[12].unlink()


def _truncated(root: Path) -> None:
    victim = sorted((root / "ct").iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:1000])


def _no_weight(root: Path) -> None:
    edit_series(root / "pet", lambda ds, k: delattr(ds, "PatientWeight"))


def _no_dose(root: Path) -> None:
    edit_series(root / "pet", lambda ds, k: delattr(isotope(ds), "RadionuclideTotalDose"))


def _no_injection(root: Path) -> None:
    def drop(ds: pydicom.Dataset, k: int) -> None:
        del isotope(ds).RadiopharmaceuticalStartTime, isotope(ds).RadiopharmaceuticalStartDateTime

    edit_series(root / "pet", drop)


BAD_STUDIES = [
    ("no-pet", _only("ct"), r"no PET series in .*Give the folder with the study's PET"),
    ("no-ct", _only("pet"), r"no CT series in .*axial CT"),
    ("nac-only", _pet_nac, r"no attenuation-corrected PET .*CorrectedImage \(0028,0051\) has no ATTN in series 3 "),
    ("other-study", _other_study, r"do not share a study and frame of reference .*study 1\.2\.826\.0\.1\.3680043\.8\.498\.777"),
    ("other-frame", _other_frame, r"do not share a study and frame of reference .*frame of reference 1\.2\.826\.0\.1\.3680043\.8\.498\.778"),
    ("not-dicom", _no_dicom, r"no DICOM image files in .*\(1 other file\(s\)\)"),
    ("empty", _empty, r"no DICOM image files in .*\(0 other file\(s\)\)"),
    ("ct-gap", _ct_gap, r'series 2 "CT low dose, no contrast" .*1 missing slice\(s\)'),
    ("truncated", _truncated, r"1 damaged DICOM file\(s\) .*CT02_0006.dcm"),
    ("no-weight", _no_weight, r"series 3 .*PatientWeight \(0010,1030\) is missing"),
    ("no-dose", _no_dose, r"series 3 .*RadionuclideTotalDose \(0018,1074\)"),
    ("no-injection-time", _no_injection, r"series 3 .*injection time missing"),
]


@pytest.mark.parametrize(("breaks", "message"), [b[1:] for b in BAD_STUDIES], ids=[b[0] for b in BAD_STUDIES])
def test_bad_study_is_an_input_error_naming_the_problem(study_copy: Path, breaks, message: str) -> None:
    breaks(study_copy)
    with pytest.raises(InputError, match=message):
        load_study(study_copy)


# --- the same rules file drives the MONAI Deploy selector ----------------------------------------

SDK_SCRIPT = """
import json, sys
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.core import Fragment
fragment = Fragment()
from pathlib import Path
studies = DICOMDataLoaderOperator(fragment, name="loader").load_data_to_studies(Path(sys.argv[1]))
rules = json.loads(open(sys.argv[2]).read())
chosen = DICOMSeriesSelectorOperator(fragment, name="selector").filter(rules, studies, all_matched=True)
print(json.dumps({name: sorted(s.series.SeriesInstanceUID for s in items) for name, items in chosen[0].series_by_selection_name.items()}))
"""


@pytest.mark.slow
def test_rules_file_selects_the_same_series_in_the_sdk(phantom: Path) -> None:
    pytest.importorskip("monai.deploy", reason="monai-deploy-app-sdk is not installed")
    rules_file = REPO / "config" / "series_selection.json"

    def big_stack() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (32 * 1024 * 1024, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    res = subprocess.run([sys.executable, "-c", SDK_SCRIPT, str(phantom), str(rules_file)], capture_output=True, text=True,
                         preexec_fn=big_stack, env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    sdk = json.loads(res.stdout.strip().splitlines()[-1])
    index = index_folder(phantom)
    ours = {name: sorted(s.series_uid for s in index.series if matches(cond, s))
            for name, cond in ((s["name"], s["conditions"]) for s in load_rules()["selections"])}
    assert sdk == ours and ours["CT"] and ours["PET"]
