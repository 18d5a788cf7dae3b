"""Building blocks shared by the synthetic CT and PET DICOM writers.

Deterministic by construction: UIDs come from ``generate_uid(entropy_srcs=[study.uid_seed, ...])``
and every date/time is derived from the study or acquisition, never from the wall clock.
Geometry follows :mod:`nstage.geometry` (LPS, arrays ``[k, j, i]``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
    write_file_meta_info,
)
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
    add_plane_constants(ds, grid)
    add_slice_position(ds, grid, k)


def add_plane_constants(ds: Dataset, grid: Grid) -> None:
    """The Image Plane attributes that every slice of ``grid`` shares."""
    d = grid.direction
    sx, sy, sz = grid.spacing
    ds.PixelSpacing = [ds_text(sy), ds_text(sx)]
    ds.ImageOrientationPatient = [ds_text(v) for v in (*d[:, 0], *d[:, 1])]
    ds.SliceThickness = ds_text(sz)


def add_slice_position(ds: Dataset, grid: Grid, k: int, positions: np.ndarray | None = None) -> None:
    """ImagePositionPatient and SliceLocation of slice ``k`` (``positions``: grid.slice_positions(), if at hand)."""
    d = grid.direction
    pos = (grid.slice_positions() if positions is None else positions)[k]
    ds.ImagePositionPatient = [ds_text(v) for v in pos]
    ds.SliceLocation = ds_text(float(np.dot(pos, d[:, 2])))


def add_pixels(ds: Dataset, pixels: np.ndarray, *, signed: bool) -> None:
    """Image Pixel attributes and PixelData of one 16-bit greyscale slice."""
    add_pixel_format(ds, pixels.shape, signed=signed)
    add_pixel_data(ds, pixels, signed=signed)


def add_pixel_format(ds: Dataset, shape: tuple[int, ...], *, signed: bool) -> None:
    """Image Pixel attributes (all but PixelData) of 16-bit greyscale slices of ``shape`` (rows, columns)."""
    rows, cols = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0


def add_pixel_data(ds: Dataset, pixels: np.ndarray, *, signed: bool) -> None:
    """PixelData of one 16-bit greyscale slice."""
    dtype = np.dtype("<i2") if signed else np.dtype("<u2")
    ds.PixelData = np.ascontiguousarray(pixels, dtype=dtype).tobytes()


class SharedElements:
    """The encoded form (Explicit VR Little Endian) of the elements of a dataset that every slice of a
    series holds, worked out once (see :func:`save`)."""

    def __init__(self, template: Dataset) -> None:
        self.encodings = template.get("SpecificCharacterSet", default_encoding)
        self._bytes: dict[int, tuple[DataElement, object, bytes]] = {}
        correct_ambiguous_vr(template, True)
        for elem in template:
            self._bytes[id(elem)] = (elem, elem._value, _encoded(elem, self.encodings))

    def encoded(self, elem: DataElement, encodings: object) -> bytes:
        hit = self._bytes.get(id(elem))
        if hit is not None and hit[0] is elem and hit[1] is elem._value and encodings == self.encodings:
            return hit[2]
        return _encoded(elem, encodings)


def _encoded(elem: DataElement, encodings: object) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    write_data_element(buffer, elem, encodings)  # type: ignore[arg-type]
    return buffer.getvalue()


def save(ds: Dataset, path: Path, shared: SharedElements | None = None) -> None:
    """Write ``ds`` as a Part 10 file, Explicit VR Little Endian.

    ``shared``: elements ``ds`` took from a series template, whose encoding is reused; the file is
    then put together as ``ds.save_as(path, enforce_file_format=True)`` writes it, byte for byte:
    preamble, prefix, file meta information, and the elements in tag order after the same
    correction of ambiguous VRs (tests/synth/test_dicom_writer.py compares the two)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    if shared is None:
        ds.save_as(path, enforce_file_format=True)
        return
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    fp.write(b"\x00" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    correct_ambiguous_vr(ds, True)
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = False
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:  # retired group lengths are not written
            continue
        fp.write(shared.encoded(ds[tag], encodings))
    Path(path).write_bytes(fp.getvalue())


def check_volume(array: np.ndarray, grid: Grid, what: str, keep_float32: bool = False) -> np.ndarray:
    """``array`` as float64 (float32 stays float32 if `keep_float32`) after checking that it matches ``grid`` and is finite."""
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"{what}: array shape {array.shape} does not match grid shape {grid.shape}")
    keep = keep_float32 and isinstance(array, np.ndarray) and array.dtype == np.float32
    out = array if keep else np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what}: array holds NaN or infinite values")
    return out
