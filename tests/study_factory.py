"""Small DICOM studies for the ingest and SUV tests, written with the synthetic generator's writers.

- :data:`STUDY`, :data:`ACQ`: the phantom patient, study and PET acquisition (every test that writes
  a small study uses these);
- :func:`write_phantom_study`: a tiny CT + PET (milliseconds to write) with known geometry;
- :func:`edit_series`: rewrite the headers of every file of a written series;
- :func:`case_truth_suv`, :func:`case_study_and_acquisition`: facts of a case of the shared
  ``small_cohort`` fixture (conftest.py), to compare against and to re-write its PET;
- :func:`pet_header`: one in-memory PET slice header for the SUV rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from nstage.geometry import Grid, load_nifti
from nstage.synth.acquisition import PatientStudy, PetAcquisition, suv_bw_factor
from nstage.synth.case import presets_config
from nstage.synth.dicom_writer import write_ct_series, write_pet_series

STUDY = PatientStudy(
    patient_name="Ingest^Test",
    patient_id="ING001",
    birth_date="19600101",
    sex="M",
    age_years=64,
    weight_kg=82.5,
    height_m=1.79,
    study_uid="1.2.826.0.1.3680043.8.498.20001",
    frame_of_reference_uid="1.2.826.0.1.3680043.8.498.20002",
    study_datetime=datetime(2025, 6, 2, 8, 30, 0),
    accession_number="ACC-ING",
    study_id="ING1",
    uid_seed="test-ingest",
)
ACQ = PetAcquisition(
    injected_dose_bq=3.1e8,
    injection_datetime=datetime(2025, 6, 2, 8, 0, 0),
    scan_start=datetime(2025, 6, 2, 9, 2, 15, 250000),  # fractional seconds, as scanners write them
    bed_duration_s=120.0,
    bed_length_mm=40.0,
)
CT_GRID = Grid(shape=(24, 40, 48), spacing=(2.5, 2.0, 3.0), origin=(-60.0, -40.0, -30.0))
PET_GRID = Grid(shape=(18, 30, 32), spacing=(4.0, 4.0, 4.0), origin=(-62.0, -58.0, -32.0))
HOT_LPS = (-30.0, -2.0, 0.0)  # the centre of PET voxel (i=8, j=14, k=8) and of CT voxel (i=12, j=19, k=10)
WARM_BQML = 2500.0
HOT_BQML = 40000.0


def suv_factor() -> float:
    """True SUVbw per Bq/ml of the phantom study."""
    return suv_bw_factor(STUDY, ACQ)


def pet_activity() -> np.ndarray:
    """Warm block with one hot voxel at HOT_LPS (Bq/ml, decay-corrected to the scan start)."""
    act = np.zeros(PET_GRID.shape, np.float32)
    act[2:-2, 4:-4, 4:-4] = WARM_BQML
    i, j, k = np.rint(PET_GRID.lps_to_index(np.asarray(HOT_LPS))).astype(int)
    act[k, j, i] = HOT_BQML
    return act


def ct_hu() -> np.ndarray:
    """Air outside, soft tissue in a block, a bone rod along z."""
    hu = np.full(CT_GRID.shape, -1000.0, np.float32)
    hu[:, 5:-5, 6:-6] = 40.0
    hu[:, 18:22, 20:24] = 900.0
    return hu


def write_phantom_study(
    root: Path,
    *,
    vendor: str = "default",
    study: PatientStudy = STUDY,
    ct: bool = True,
    pet: bool = True,
    ct_grid: Grid = CT_GRID,
) -> Path:
    """Write the phantom CT (``root/ct``) and PET (``root/pet``); returns ``root``."""
    if ct:
        hu = ct_hu() if ct_grid is CT_GRID else np.full(ct_grid.shape, 40.0, np.float32)
        write_ct_series(hu, ct_grid, study, root / "ct", contrast=False)
    if pet:
        write_pet_series(pet_activity(), PET_GRID, study, ACQ, root / "pet", vendor=vendor)
    return root


def edit_series(folder: Path, edit: Callable[[Dataset, int], None]) -> None:
    """Apply ``edit(dataset, k)`` to every file of ``folder`` (k: sorted file order) and save."""
    for k, path in enumerate(sorted(p for p in folder.iterdir() if p.is_file())):
        ds = pydicom.dcmread(path)
        edit(ds, k)
        ds.save_as(path, enforce_file_format=True)


def isotope(ds: Dataset) -> Dataset:
    """The RadiopharmaceuticalInformationSequence item of a PET dataset."""
    return ds.RadiopharmaceuticalInformationSequence[0]


def case_truth_suv(case_dir: Path) -> tuple[np.ndarray, Grid]:
    """The generator's true SUVbw of a synthetic case (truth_suv.nii.gz) and its PET grid."""
    suv, grid = load_nifti(case_dir / "truth_suv.nii.gz")
    return np.asarray(suv, dtype=np.float64), grid


def case_study_and_acquisition(case_dir: Path) -> tuple[PatientStudy, PetAcquisition]:
    """PatientStudy and PetAcquisition that re-create a synthetic case's PET header facts
    (truth.json ``pet.header``, UIDs of its CT) so that its PET can be written again in another style."""
    h = json.loads((case_dir / "truth.json").read_text())["pet"]["header"]
    ct0 = pydicom.dcmread(next((case_dir / "dicom" / "ct").iterdir()), stop_before_pixels=True)
    study = PatientStudy(
        patient_name="SYNTHETIC^REWRITE", patient_id="SYNREWRITE", birth_date="19600101", sex=h["sex"], age_years=64,
        weight_kg=h["weight_kg"], height_m=h["height_m"], study_uid=ct0.StudyInstanceUID,
        frame_of_reference_uid=ct0.FrameOfReferenceUID, study_datetime=datetime.fromisoformat(h["scan_start"]),
        accession_number="A1", study_id="1", uid_seed="rewrite",
    )
    acq = PetAcquisition(
        injected_dose_bq=h["dose_bq"], injection_datetime=datetime.fromisoformat(h["injection_datetime"]),
        scan_start=datetime.fromisoformat(h["scan_start"]), bed_duration_s=h["frame_duration_s"],
        bed_length_mm=float(presets_config()["pet_bed_length_mm"]),
        half_life_s=h["half_life_s"],
    )
    return study, acq


# --- in-memory PET headers (the SUV manual's baseline DRO: 70 kg, 368.08 MBq F-18, 1 h uptake) ---

F18 = 6586.2
W, DOSE = 70.0, 368.08e6


def pet_header(**attrs: object) -> Dataset:
    """A BQML / START PET slice header: 70 kg, 368.08 MBq F-18 at 10:00, scan at 11:00.

    Keyword arguments set attributes (None deletes, bytes are stored raw, unvalidated, as a bad
    file would hold them); ``iso_<Keyword>`` sets them in the isotope item."""
    ds = Dataset()
    ds.Modality, ds.Units, ds.DecayCorrection = "PT", "BQML", "START"
    ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.SeriesDate = ds.AcquisitionDate = ds.StudyDate = "20250101"
    ds.SeriesTime = ds.AcquisitionTime = "110000"
    ds.PatientWeight, ds.PatientSize, ds.PatientSex = "70", "1.75", "M"
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    ds.ActualFrameDuration, ds.FrameReferenceTime = 300000, "150000"
    ds.PixelSpacing, ds.SliceThickness = ["4", "4"], "4"
    item = Dataset()
    item.RadiopharmaceuticalStartTime, item.RadiopharmaceuticalStartDateTime = "100000", "20250101100000"
    item.RadionuclideTotalDose, item.RadionuclideHalfLife = str(DOSE), str(F18)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
    item.RadionuclideCodeSequence = [code]
    ds.RadiopharmaceuticalInformationSequence = [item]
    for key, value in attrs.items():
        target, key = (item, key[4:]) if key.startswith("iso_") else (ds, key)
        if value is None:
            if key in target:
                delattr(target, key)
        elif isinstance(value, bytes):
            set_raw(target, key, value)
        else:
            setattr(target, key, value)
    return ds


def set_raw(ds: Dataset, keyword: str, value: bytes) -> None:
    """Store ``value`` as the undecoded bytes of ``keyword`` (decoded lazily, like a read file)."""
    tag = Tag(keyword)
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
