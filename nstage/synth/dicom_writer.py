"""Write synthetic CT and PET volumes as DICOM series (one file per slice).

Public API: :func:`write_ct_series`, :func:`write_pet_series`, :func:`vendor_names` and
:class:`PetHeaderTruth`. Inputs are ``[k, j, i]`` arrays on a :class:`~nstage.geometry.Grid`
(LPS); ImagePositionPatient of slice ``k`` is ``grid.slice_positions()[k]``.

CT pixels: signed int16, RescaleIntercept -1024, RescaleSlope 1 (stored = HU + 1024), HU
clipped to [-1024, 3071]. PET pixels: 16-bit with a per-slice RescaleSlope and intercept 0
(unsigned when the volume has no negative value, signed otherwise); the header style is one of
the variants of ``config/synth/vendors.json`` (see :mod:`nstage.synth.pet_vendors`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, PositronEmissionTomographyImageStorage

from nstage.geometry import Grid
from nstage.synth.acquisition import PatientStudy, PetAcquisition, suv_bw_factor
from nstage.synth.dicom_common import (
    SharedElements,
    add_pixel_data,
    add_pixel_format,
    add_plane_constants,
    add_slice_position,
    base_dataset,
    check_volume,
    code_item,
    da,
    ds_text,
    dt,
    make_uid,
    save,
    tm,
)
from nstage.synth.pet_vendors import (
    PetHeaderTruth,
    PetTiming,
    VendorStyle,
    get_vendor,
    load_vendors,
    pet_timing,
    quantise,
    slice_timing,
    unit_scale,
)

__all__ = ["PetHeaderTruth", "vendor_names", "write_ct_series", "write_pet_series"]

CT_INTERCEPT = -1024.0
CT_HU_RANGE = (-1024.0, 3071.0)
PHILIPS_CREATOR = "Philips PET Private Group"
GE_CREATOR = "GEMS_PETD_01"


def vendor_names() -> list[str]:
    """Names of the PET header-style variants, in the order of vendors.json."""
    return list(load_vendors())


# --- CT ------------------------------------------------------------------------------------------


def _add_contrast(ds: Dataset, when: datetime) -> None:
    """Contrast/Bolus module: iodinated contrast given intravenously."""
    ds.ContrastBolusAgent = "Iohexol 350 mgI/ml"
    ds.ContrastBolusAgentSequence = [code_item(codes.SCT.Iodine)]
    ds.ContrastBolusRoute = "IV"
    ds.ContrastBolusAdministrationRouteSequence = [code_item(codes.SCT.IntravenousRoute)]
    ds.ContrastBolusVolume = "80"
    ds.ContrastBolusStartTime = tm(when)
    ds.ContrastBolusIngredient = "IODINE"
    ds.ContrastBolusIngredientConcentration = "350"


def write_ct_series(
    hu: np.ndarray,
    grid: Grid,
    study: PatientStudy,
    out_dir: Path,
    *,
    contrast: bool,
    series_number: int = 2,
) -> list[Path]:
    """Write ``hu`` (float HU on ``grid``) as a CT Image series; returns the files, slice order."""
    values = check_volume(hu, grid, "CT", keep_float32=True)
    # float32 HU give the same integers in float32 as in float64 (exact conversion, clip, rint, offset)
    stored = (np.rint(np.clip(values, *CT_HU_RANGE)) - CT_INTERCEPT).astype(np.int16)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    when = study.study_datetime
    series_uid = make_uid(study, "CT", "series", series_number)
    base = base_dataset(
        study,
        modality="CT",
        sop_class_uid=CTImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        series_time=when,
        series_description="CT " + ("with IV contrast" if contrast else "low dose, no contrast"),
        model_name="SynthCT",
        weight_value=study.weight_kg,
    )
    sx = grid.spacing[0]
    template = Dataset()  # what every slice holds
    template.update(base)
    template.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    template.AcquisitionNumber = 1
    template.AcquisitionDate, template.AcquisitionTime = da(when), tm(when)
    template.ContentDate, template.ContentTime = da(when), tm(when)
    template.BurnedInAnnotation = "NO"
    template.LossyImageCompression = "00"
    add_plane_constants(template, grid)
    add_pixel_format(template, stored.shape[1:], signed=True)
    template.RescaleIntercept = ds_text(CT_INTERCEPT)
    template.RescaleSlope = "1"
    template.RescaleType = "HU"
    template.WindowCenter, template.WindowWidth = "40", "400"
    template.KVP = "120"
    template.ScanOptions = "HELICAL MODE"
    template.DataCollectionDiameter = "500"
    template.ReconstructionDiameter = ds_text(sx * grid.shape[2])
    template.GantryDetectorTilt = "0"
    template.TableHeight = "150"
    template.RotationDirection = "CW"
    template.XRayTubeCurrent = 120 if contrast else 40
    template.ConvolutionKernel = "STANDARD"
    template.SpiralPitchFactor = 1.0
    if contrast:
        _add_contrast(template, when)
    shared = SharedElements(template)
    positions = grid.slice_positions()
    paths: list[Path] = []
    for k in range(grid.shape[0]):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = make_uid(study, "CT", "instance", series_number, k)
        ds.InstanceNumber = k + 1
        add_slice_position(ds, grid, k, positions)
        add_pixel_data(ds, stored[k], signed=True)
        path = out_dir / f"CT{series_number:02d}_{k + 1:04d}.dcm"
        save(ds, path, shared)
        paths.append(path)
    return paths


# --- PET -----------------------------------------------------------------------------------------


def _isotope_item(acq: PetAcquisition, style: VendorStyle, timing: PetTiming) -> Dataset:
    """RadiopharmaceuticalInformationSequence item (PET Isotope module)."""
    item = Dataset()
    item.RadiopharmaceuticalRoute = "Intravenous"
    item.AdministrationRouteCodeSequence = [code_item(codes.SCT.IntravenousRoute)]
    item.Radiopharmaceutical = "Fluorodeoxyglucose"
    if style.radiopharmaceutical_start in ("both", "time"):
        item.RadiopharmaceuticalStartTime = tm(timing.injection)
    if style.radiopharmaceutical_start in ("both", "datetime"):
        item.RadiopharmaceuticalStartDateTime = dt(timing.injection)
    dose = acq.injected_dose_bq / (1.0e6 if style.dose_unit == "MBq" else 1.0)
    item.RadionuclideTotalDose = ds_text(dose)
    item.RadionuclideHalfLife = ds_text(acq.half_life_s)
    item.RadionuclidePositronFraction = ds_text(acq.positron_fraction)
    item.RadionuclideCodeSequence = [code_item(codes.SCT._18Fluorine)]
    item.RadiopharmaceuticalCodeSequence = [code_item(codes.SCT.FluorodeoxyglucoseF18)]
    return item


def _pet_series_attrs(ds: Dataset, style: VendorStyle, grid: Grid, acq: PetAcquisition, timing: PetTiming) -> None:
    """PET Series, PET Isotope and NM/PET Patient Orientation modules."""
    corrected = ["NORM", "DTIM", "ATTN", "SCAT", "RAN"]
    if style.decay_correction != "NONE":
        corrected.append("DECY")
    if style.units != "CNTS":
        corrected.append("DCAL")
    ds.Units = style.units
    if style.suv_type is not None:
        ds.SUVType = style.suv_type
    ds.CountsSource = "EMISSION"
    ds.CollimatorType = "NONE"
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.NumberOfSlices = grid.shape[0]
    ds.CorrectedImage = corrected
    ds.DecayCorrection = style.decay_correction
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT-based"
    ds.ScatterCorrectionMethod = "single scatter simulation"
    ds.ReconstructionDiameter = ds_text(grid.spacing[0] * grid.shape[2])
    ds.ReconstructionMethod = "OSEM 3i 21s"
    ds.AcquisitionStartCondition = "MANU"
    ds.CoincidenceWindowWidth = "4.5"
    window = Dataset()
    window.EnergyWindowLowerLimit = "435"
    window.EnergyWindowUpperLimit = "650"
    ds.EnergyWindowRangeSequence = [window]
    ds.RadiopharmaceuticalInformationSequence = [_isotope_item(acq, style, timing)]
    orientation = code_item(codes.SCT.Recumbent)
    orientation.PatientOrientationModifierCodeSequence = [code_item(codes.SCT.Supine)]
    ds.PatientOrientationCodeSequence = [orientation]
    ds.PatientGantryRelationshipCodeSequence = [code_item(codes.SCT.Headfirst)]


def _add_private(ds: Dataset, ge_scan: datetime | None, suv_sf: float | None, acsf: float | None) -> None:
    """GE scan datetime (0009,100D) and Philips SUV / activity scale factors (7053,1000/1009)."""
    if ge_scan is not None:
        ds.private_block(0x0009, GE_CREATOR, create=True).add_new(0x0D, "DT", dt(ge_scan))
    if suv_sf is not None or acsf is not None:
        block = ds.private_block(0x7053, PHILIPS_CREATOR, create=True)
        if suv_sf is not None:
            block.add_new(0x00, "DS", ds_text(suv_sf))
        if acsf is not None:
            block.add_new(0x09, "DS", ds_text(acsf))


def write_pet_series(
    activity_bqml: np.ndarray,
    grid: Grid,
    study: PatientStudy,
    acq: PetAcquisition,
    out_dir: Path,
    *,
    vendor: str = "default",
    series_number: int = 3,
) -> PetHeaderTruth:
    """Write ``activity_bqml`` (Bq/ml, decay-corrected to ``acq.scan_start``) as a PET Image
    series in the header style ``vendor``; returns what a SUV reader must recover."""
    style = get_vendor(vendor)
    activity = check_volume(activity_bqml, grid, "PET")
    timing = pet_timing(grid, acq, style)
    n = grid.shape[0]
    slices = [slice_timing(timing, acq, style, k) for k in range(n)]
    to_header = unit_scale(style, study, acq, grid)
    if style.units in ("BQML", "CNTS"):  # activity units follow the decay convention; SUVs don't
        per_slice = np.array([to_header * s.activity_scale for s in slices])
    else:
        per_slice = np.full(n, to_header)
    ints, slopes, signed = quantise(activity * per_slice[:, None, None], style.rescale_slope == "per_slice")
    f_true = suv_bw_factor(study, acq)
    to_activity = slopes / per_slice
    # Philips: SUVbw = stored x slope x (7053,1000); Bq/ml = stored x slope x (7053,1009)
    suv_sf = tuple(float(f_true / p) for p in per_slice) if style.philips_suv_scale_factor else None
    acsf = 1.0 / to_header if style.philips_activity_scale_factor else None
    ge_scan = timing.scan_start if style.ge_private_scan_datetime else None
    weight = study.weight_kg * (1000.0 if style.weight_unit == "g" else 1.0)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = make_uid(study, "PT", "series", series_number, vendor)
    base = base_dataset(
        study,
        modality="PT",
        sop_class_uid=PositronEmissionTomographyImageStorage,
        series_uid=series_uid,
        series_number=series_number,
        series_time=timing.series_time,
        series_description=f"PET AC FDG ({vendor})",
        model_name=style.model_name,
        weight_value=weight,
        patient_position=None,
    )
    _pet_series_attrs(base, style, grid, acq, timing)
    template = Dataset()  # what every slice holds
    template.update(base)
    template.ImageType = ["ORIGINAL", "PRIMARY"]
    template.AcquisitionNumber = 1
    if style.acquisition_time == "series":
        template.AcquisitionDate, template.AcquisitionTime = da(timing.series_time), tm(timing.series_time)
    template.ContentDate, template.ContentTime = da(timing.series_time), tm(timing.series_time)
    template.BurnedInAnnotation = "NO"
    template.LossyImageCompression = "00"
    add_plane_constants(template, grid)
    add_pixel_format(template, ints.shape[1:], signed=signed)
    template.RescaleIntercept = "0"
    template.ActualFrameDuration = int(round(acq.bed_duration_s * 1000.0))
    template.SliceSensitivityFactor = "1"
    shared = SharedElements(template)
    positions = grid.slice_positions()
    for k in range(n):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = make_uid(study, "PT", "instance", series_number, vendor, k)
        ds.InstanceNumber = k + 1
        ds.ImageIndex = k + 1
        if style.acquisition_time != "series":
            acq_t = timing.bed_start[timing.bed_of_slice[k]]
            ds.AcquisitionDate, ds.AcquisitionTime = da(acq_t), tm(acq_t)
        add_slice_position(ds, grid, k, positions)
        add_pixel_data(ds, ints[k], signed=signed)
        ds.RescaleSlope = ds_text(slopes[k])
        ds.FrameReferenceTime = ds_text(slices[k].frame_reference_ms)
        if slices[k].decay_factor is not None:
            ds.DecayFactor = ds_text(slices[k].decay_factor)
        _add_private(ds, ge_scan, suv_sf[k] if suv_sf else None, acsf)
        save(ds, out_dir / f"PT{series_number:02d}_{k + 1:04d}.dcm", shared)

    reference = {"START": timing.scan_start, "ADMIN": timing.injection}.get(style.decay_correction)
    return PetHeaderTruth(
        vendor=vendor,
        description=style.description,
        units=style.units,
        decay_correction=style.decay_correction,
        suv_type=style.suv_type,
        suv_bw_factor=f_true,
        stored_to_suv_bw=tuple(float(v) for v in to_activity * f_true),
        stored_to_activity_bqml=tuple(float(v) for v in to_activity),
        rescale_slopes=tuple(float(s) for s in slopes),
        pixel_representation=int(signed),
        reference_datetime=reference.isoformat() if reference else None,
        scan_start=timing.scan_start.isoformat(),
        injection_datetime=timing.injection.isoformat(),
        time_shift_s=timing.shift_s,
        series_datetime=timing.series_time.isoformat(),
        dose_bq=acq.injected_dose_bq,
        dose_header_value=float(base.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose),
        dose_unit=style.dose_unit,
        weight_kg=study.weight_kg,
        weight_header_value=float(base.PatientWeight),
        weight_unit=style.weight_unit,
        height_m=study.height_m,
        sex=study.sex,
        half_life_s=acq.half_life_s,
        frame_duration_s=timing.frame_duration_s,
        bed_of_slice=timing.bed_of_slice,
        bed_start=tuple(t.isoformat() for t in timing.bed_start),
        philips_suv_scale_factor=suv_sf,
        philips_activity_scale_factor=acsf,
        ge_scan_datetime=dt(ge_scan) if ge_scan else None,
        series_instance_uid=series_uid,
        n_slices=n,
    )
