"""Enhanced (multi-frame) CT and PET objects as per-frame headers, so they read as single-frame slices.

Enhanced CT / PET Image Storage and their Legacy Converted Enhanced forms keep one image per frame
inside one file, with the attributes of a single-frame slice spread over functional groups:
``SharedFunctionalGroupsSequence`` (all frames) and ``PerFrameFunctionalGroupsSequence`` (one item
per frame). :func:`frame_headers` gives, for each frame, a header as a single-frame slice would carry
it: the top-level attributes, then the shared groups, then the frame's own groups, each group's item
lifted to the top level (Plane Position -> ImagePositionPatient, Plane Orientation ->
ImageOrientationPatient, Pixel Measures -> PixelSpacing / SliceThickness, Pixel Value Transformation
-> RescaleSlope / RescaleIntercept, PET Frame Correction Factors -> DecayFactor, the Unassigned
Converted Attributes of a legacy conversion -> whatever the source slices had). Frame Content gives
the frame's AcquisitionDateTime and ActualFrameDuration. The Enhanced PET modules' Boolean flags
(Decay Corrected, Attenuation Corrected, ...) and Rescale Type give DecayCorrection, CorrectedImage
and Units where the single-frame attributes are absent. The geometry checks and the SUV rules then
run on these headers unchanged.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from nstage.ingest.dicom_values import BadValue, number, text, words

PER_FRAME = "PerFrameFunctionalGroupsSequence"
SHARED = "SharedFunctionalGroupsSequence"
_NOT_COPIED = {PER_FRAME, SHARED, "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames"}
PET_UNITS = {"BQML", "CNTS", "CPS", "GML", "CM2ML", "PCNT", "NONE", "MGMINML", "UMOLMINML", "MLMING", "MLG", "1CM", "UMOLML",
             "PROPCNTS", "PROPCPS", "MLMINML", "MLML", "GMLM"}  # PS3.3 C.8.9.1.1.3 (Units)
_CORRECTION_FLAGS = (("AttenuationCorrected", "ATTN"), ("ScatterCorrected", "SCAT"), ("DecayCorrected", "DECY"),
                     ("RandomsCorrected", "RAN"), ("DeadTimeCorrected", "DTIM"), ("GantryMotionCorrected", "MOTN"),
                     ("PatientMotionCorrected", "PMOT"), ("CountLossNormalizationCorrected", "CLN"))  # fmt: skip


def frame_count(ds: Dataset) -> int:
    """NumberOfFrames (1 when absent); BadValue when it is not a whole number."""
    n = number(ds, "NumberOfFrames")
    if n is None:
        return 1
    if n != int(n) or n < 1:
        raise BadValue(f"NumberOfFrames (0028,0008) is {n}, not a positive whole number")
    return int(n)


def has_functional_groups(ds: Dataset) -> bool:
    """Whether ``ds`` is an enhanced object (its frames are described by per-frame functional groups)."""
    return PER_FRAME in ds


def _copy(ds: Dataset) -> Dataset:
    """A new dataset holding the same elements (``Dataset(ds)`` would share ``ds``'s storage)."""
    out = Dataset()
    for element in ds:
        out[element.tag] = element
    return out


def _lift(target: Dataset, groups: Dataset) -> None:
    """Copy each functional group's (single) item to the top level of ``target``."""
    for group in groups:
        if group.VR != "SQ" or len(group.value) != 1:
            continue
        for element in group.value[0]:
            target[element.tag] = element


def _frame_content(target: Dataset, groups: Dataset) -> None:
    content = groups.get("FrameContentSequence")
    if not content:
        return
    item = content[0]
    if text(item, "FrameAcquisitionDateTime"):
        target.AcquisitionDateTime = item.FrameAcquisitionDateTime
    duration = number(item, "FrameAcquisitionDuration")
    if duration is not None and "ActualFrameDuration" not in target:
        target.ActualFrameDuration = int(round(duration))


def _pet_module(target: Dataset) -> None:
    """Single-frame PET attributes from the Enhanced PET modules, where they are absent."""
    if "Units" not in target:
        rescale_type = (text(target, "RescaleType") or "").upper()
        if rescale_type in PET_UNITS:
            target.Units = rescale_type
    if "DecayCorrection" not in target and text(target, "DecayCorrected"):
        target.DecayCorrection = "START" if text(target, "DecayCorrected") == "YES" else "NONE"
    if not words(target, "CorrectedImage"):
        flags = [code for keyword, code in _CORRECTION_FLAGS if text(target, keyword) == "YES"]
        if flags:
            target.CorrectedImage = flags


def frame_headers(ds: Dataset) -> list[Dataset]:
    """One header per frame of the enhanced object ``ds``, as a single-frame slice carries it.

    BadValue when the per-frame functional groups do not describe every frame."""
    n = frame_count(ds)
    per_frame = ds.get(PER_FRAME) or []
    if len(per_frame) != n:
        raise BadValue(f"{PER_FRAME} has {len(per_frame)} item(s) for {n} frame(s)")
    base = Dataset()
    for element in ds:
        if element.keyword not in _NOT_COPIED:
            base[element.tag] = element
    if SHARED in ds and len(ds[SHARED].value) == 1:
        _lift(base, ds[SHARED].value[0])
    out = []
    for groups in per_frame:
        frame = _copy(base)
        if getattr(ds, "file_meta", None) is not None:
            frame.file_meta = ds.file_meta
        _lift(frame, groups)
        _frame_content(frame, groups)
        if (text(frame, "Modality") or "").upper() == "PT":
            _pet_module(frame)
        out.append(frame)
    return out
