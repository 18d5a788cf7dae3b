"""Building blocks shared by the synthetic CT and PET DICOM writers.

Deterministic by construction: UIDs come from ``generate_uid(entropy_srcs=[study.uid_seed, ...])``
and every date/time is derived from the study or acquisition, never from the wall clock.
Geometry follows :mod:`nstage.geometry` (LPS, arrays ``[k, j, i]``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

import nstage
from nstage.geometry import Grid
from nstage.synth.acquisition import PatientStudy

MANUFACTURER = "nstage-synth"
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["nstage-synth", "implementation"])
IMPLEMENTATION_VERSION_NAME = f"NSTAGE_{nstage.__version__}"[:16]


def make_uid(study: PatientStudy, *parts: object) -> str:
    """A UID that depends only on the study's seed and ``parts``."""
    return str(generate_uid(entropy_srcs=[study.uid_seed, *(str(p) for p in parts)]))


def da(t: datetime) -> str:
    """DICOM DA (YYYYMMDD)."""
    return t.strftime("%Y%m%d")


def tm(t: datetime) -> str:
    """DICOM TM (HHMMSS, with .ffffff only when there are fractional seconds)."""
    return t.strftime("%H%M%S.%f") if t.microsecond else t.strftime("%H%M%S")


def dt(t: datetime) -> str:
    """DICOM DT without time zone (YYYYMMDDHHMMSS[.ffffff])."""
    return da(t) + tm(t)


def ds_text(value: float) -> str:
    """``value`` as a valid DS string (at most 16 characters, as much precision as fits)."""
    return format_number_as_ds(float(value))


def ds_written(value: float) -> float:
    """The float a reader gets back from the DS string of ``value``."""
    return float(ds_text(value))


def code_item(code: Code) -> Dataset:
    """A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def base_dataset(
    study: PatientStudy,
    *,
    modality: str,
    sop_class_uid: str,
    series_uid: str,
    series_number: int,
    series_time: datetime,
    series_description: str,
    model_name: str,
    weight_value: float,
    patient_position: str | None = "HFS",
) -> Dataset:
    """Patient, General Study, Patient Study, General Series, Frame of Reference, General
    Equipment and the series-level part of SOP Common (the same for every slice)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.InstanceCreationDate = da(series_time)
    ds.InstanceCreationTime = tm(series_time)
    # Patient
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.PatientIdentityRemoved = "NO"
    # General Study
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = da(study.study_datetime)
    ds.StudyTime = tm(study.study_datetime)
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = "PET-CT synthetic"
    # Patient Study
    ds.PatientAge = f"{max(0, min(999, int(study.age_years))):03d}Y"
    ds.PatientSize = ds_text(study.height_m)
    ds.PatientWeight = ds_text(weight_value)
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = da(series_time)
    ds.SeriesTime = tm(series_time)
    ds.SeriesDescription = series_description
    ds.BodyPartExamined = "CHEST"
    if patient_position is not None:  # PET says it with PatientOrientationCodeSequence instead
        ds.PatientPosition = patient_position
    # Frame of Reference
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "nstage synthetic"
    ds.ManufacturerModelName = model_name
    ds.SoftwareVersions = nstage.__version__
    return ds


def add_image_plane(ds: Dataset, grid: Grid, k: int) -> None:
    """Image Plane attributes of slice ``k`` of ``grid``."""
    d = grid.direction
    sx, sy, sz = grid.spacing
    pos = grid.slice_positions()[k]
    ds.PixelSpacing = [ds_text(sy), ds_text(sx)]
    ds.ImageOrientationPatient = [ds_text(v) for v in (*d[:, 0], *d[:, 1])]
    ds.ImagePositionPatient = [ds_text(v) for v in pos]
    ds.SliceThickness = ds_text(sz)
    ds.SliceLocation = ds_text(float(np.dot(pos, d[:, 2])))


def add_pixels(ds: Dataset, pixels: np.ndarray, *, signed: bool) -> None:
    """Image Pixel attributes and PixelData of one 16-bit greyscale slice."""
    rows, cols = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    dtype = np.dtype("<i2") if signed else np.dtype("<u2")
    ds.PixelData = np.ascontiguousarray(pixels, dtype=dtype).tobytes()


def save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a Part 10 file, Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def check_volume(array: np.ndarray, grid: Grid, what: str) -> np.ndarray:
    """``array`` as float64 after checking that it matches ``grid`` and is finite."""
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"{what}: array shape {array.shape} does not match grid shape {grid.shape}")
    out = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what}: array holds NaN or infinite values")
    return out
