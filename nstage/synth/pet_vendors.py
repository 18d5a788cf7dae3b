"""PET header-style variants ("vendors") and the numbers each one writes.

The variants live in ``config/synth/vendors.json``. For one variant this module works out, per
slice, how the true activity (Bq/ml, decay-corrected to the scan start) becomes the value in the
header's units and decay convention, the timing attributes (beds, FrameReferenceTime,
DecayFactor), and the quantisation to 16-bit integers with a per-slice RescaleSlope.

Bed convention: bed 0 starts at slice 0 (the most inferior slice of an axial grid) at
``acq.scan_start``; bed ``b`` covers slice centres in ``[b, b+1) * bed_length_mm`` from the lower
edge of slice 0 and starts ``b * bed_duration_s`` later.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nstage.geometry import Grid
from nstage.paths import config_dir
from nstage.synth.acquisition import PatientStudy, PetAcquisition, suv_bw_factor
from nstage.synth.dicom_common import ds_written

_CHOICES: dict[str, tuple[Any, ...]] = {
    "units": ("BQML", "CNTS", "GML", "CM2ML"),
    "suv_type": (None, "BW", "LBM", "LBMJAMES128", "LBMJANMA", "IBW", "BSA"),
    "decay_correction": ("START", "ADMIN", "NONE"),
    "acquisition_time": ("per_bed", "series"),
    "dose_unit": ("Bq", "MBq"),
    "weight_unit": ("kg", "g"),
    "radiopharmaceutical_start": ("both", "time", "datetime"),
    "rescale_slope": ("per_slice", "uniform"),
}


@dataclass(frozen=True)
class VendorStyle:
    """One PET header-style variant (see the ``_doc`` block of vendors.json)."""

    name: str
    description: str
    units: str
    suv_type: str | None
    decay_correction: str
    series_time_offset_s: float
    acquisition_time: str
    ge_private_scan_datetime: bool
    philips_suv_scale_factor: bool
    philips_activity_scale_factor: bool
    dose_unit: str
    weight_unit: str
    radiopharmaceutical_start: str
    injection_before_midnight: bool
    rescale_slope: str
    model_name: str

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"vendor {self.name!r}: {key}={getattr(self, key)!r}, expected one of {allowed}")
        if self.units == "GML" and self.suv_type not in ("BW", "LBM", "LBMJAMES128", "LBMJANMA", "IBW", None):
            raise ValueError(f"vendor {self.name!r}: Units GML needs a body-weight, LBM or IBW SUVType")
        if (self.units == "CM2ML") != (self.suv_type == "BSA"):
            raise ValueError(f"vendor {self.name!r}: Units CM2ML goes with SUVType BSA and only with it")
        if (self.philips_suv_scale_factor or self.philips_activity_scale_factor) != (self.units == "CNTS"):
            raise ValueError(f"vendor {self.name!r}: Philips scale factors go with Units CNTS and only with it")


def vendors_path() -> Path:
    """Where the variants are defined."""
    return config_dir() / "synth" / "vendors.json"


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, VendorStyle]:
    raw = json.loads(path.read_text())
    defaults = raw["defaults"]
    known = {f.name for f in fields(VendorStyle)} - {"name"}
    out: dict[str, VendorStyle] = {}
    for name, entry in raw["vendors"].items():
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"{path}: vendor {name!r} has unknown keys {sorted(unknown)}")
        out[name] = VendorStyle(name=name, **{**defaults, **entry})
    return out


def load_vendors() -> dict[str, VendorStyle]:
    """All variants by name, in file order."""
    return _load(vendors_path())


def get_vendor(name: str) -> VendorStyle:
    """One variant; a clear error naming the known ones otherwise."""
    styles = load_vendors()
    if name not in styles:
        raise ValueError(f"unknown PET vendor style {name!r}; known: {', '.join(styles)}")
    return styles[name]


# --- normalisations other than body weight (SUV manual, "Units = GML" and "CM2ML") ---------------


def _by_sex(sex: str, male: float, female: float) -> float:
    """Male or female value; the mean of both for any other sex ("O")."""
    if sex == "M":
        return male
    if sex == "F":
        return female
    return 0.5 * (male + female)


def normaliser(suv_type: str | None, weight_kg: float, height_m: float, sex: str) -> float:
    """The SUV denominator's body quantity: grams for BW/LBM/IBW, cm^2 for BSA."""
    w, h = weight_kg, height_m * 100.0
    if suv_type in (None, "BW"):
        kg = w
    elif suv_type in ("LBM", "LBMJAMES128"):
        male_k = 120.0 if suv_type == "LBM" else 128.0
        kg = _by_sex(sex, 1.10 * w - male_k * (w / h) ** 2, 1.07 * w - 148.0 * (w / h) ** 2)
    elif suv_type == "LBMJANMA":
        bmi = w / (height_m**2)
        kg = _by_sex(sex, 9270.0 * w / (6680.0 + 216.0 * bmi), 9270.0 * w / (8780.0 + 244.0 * bmi))
    elif suv_type == "IBW":
        kg = _by_sex(sex, 48.0 + 1.06 * (h - 152.0), 45.5 + 0.91 * (h - 152.0))
    elif suv_type == "BSA":
        return 0.007184 * h**0.725 * w**0.425 * 1.0e4  # Du Bois, m^2 -> cm^2
    else:
        raise ValueError(f"unknown SUVType {suv_type!r}")
    if kg <= 0:
        raise ValueError(f"SUVType {suv_type}: non-positive body mass {kg:.3g} kg for W={w} kg, H={h} cm")
    return kg * 1000.0


# --- timing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PetTiming:
    """Injection, scan and bed times as written (after any midnight shift)."""

    injection: datetime
    scan_start: datetime
    shift_s: float
    series_time: datetime
    bed_of_slice: tuple[int, ...]
    bed_start: tuple[datetime, ...]
    frame_duration_s: float
    t_ave_s: float  # average count-rate time within a bed, from its start


def _midnight_shift(acq: PetAcquisition) -> timedelta:
    """Shift that puts the injection before and the scan start after a midnight."""
    if acq.scan_start.date() != acq.injection_datetime.date():
        return timedelta(0)
    gap = acq.scan_start - acq.injection_datetime
    if gap <= timedelta(0):
        raise ValueError("midnight variant needs the scan start after the injection")
    half = timedelta(seconds=math.ceil(gap.total_seconds() / 2.0))
    midnight = datetime.combine(acq.injection_datetime.date() + timedelta(days=1), datetime.min.time())
    return (midnight - half) - acq.injection_datetime


def pet_timing(grid: Grid, acq: PetAcquisition, style: VendorStyle) -> PetTiming:
    """Bed assignment of every slice and the times the header writes."""
    if acq.bed_duration_s <= 0 or acq.bed_length_mm <= 0:
        raise ValueError("PetAcquisition needs bed_duration_s > 0 and bed_length_mm > 0")
    shift = _midnight_shift(acq) if style.injection_before_midnight else timedelta(0)
    start, inj = acq.scan_start + shift, acq.injection_datetime + shift
    sz = grid.spacing[2]
    beds = tuple(int(((k + 0.5) * sz) // acq.bed_length_mm) for k in range(grid.shape[0]))
    bed_start = tuple(start + timedelta(seconds=b * acq.bed_duration_s) for b in range(max(beds) + 1))
    lam, t = math.log(2.0) / acq.half_life_s, acq.bed_duration_s
    t_ave = math.log(lam * t / (1.0 - math.exp(-lam * t))) / lam
    return PetTiming(
        injection=inj,
        scan_start=start,
        shift_s=shift.total_seconds(),
        series_time=start + timedelta(seconds=style.series_time_offset_s),
        bed_of_slice=beds,
        bed_start=bed_start,
        frame_duration_s=t,
        t_ave_s=t_ave,
    )


@dataclass(frozen=True)
class SliceTiming:
    """FrameReferenceTime (ms), DecayFactor (None for NONE) and the factor that turns the true
    activity (decay-corrected to scan start) into the activity in the header's decay convention."""

    frame_reference_ms: float
    decay_factor: float | None
    activity_scale: float


def slice_timing(timing: PetTiming, acq: PetAcquisition, style: VendorStyle, k: int) -> SliceTiming:
    """Decay bookkeeping of slice ``k`` (SUV manual, "Radiopharmaceutical dose")."""
    lam = math.log(2.0) / acq.half_life_s
    bed_t = timing.bed_start[timing.bed_of_slice[k]]
    since_start = (bed_t - timing.scan_start).total_seconds()
    if style.decay_correction == "START":
        dt_ref = since_start + timing.t_ave_s
        return SliceTiming(dt_ref * 1000.0, math.exp(lam * dt_ref), 1.0)
    if style.decay_correction == "ADMIN":
        dt_ref = (bed_t - timing.injection).total_seconds() + timing.t_ave_s
        start_since_inj = (timing.scan_start - timing.injection).total_seconds()
        return SliceTiming(dt_ref * 1000.0, math.exp(lam * dt_ref), math.exp(lam * start_since_inj))
    # NONE: the mean activity during the bed, i.e. decayed to the average count-rate time
    dt_ref = since_start + timing.t_ave_s
    return SliceTiming(dt_ref * 1000.0, None, math.exp(-lam * dt_ref))


# --- units and quantisation ----------------------------------------------------------------------


def counts_per_bqml(grid: Grid, acq: PetAcquisition) -> float:
    """CNTS calibration of the synthetic scanner: counts = Bq/ml x voxel ml x frame seconds."""
    return grid.voxel_volume_ml * acq.bed_duration_s


def unit_scale(style: VendorStyle, study: PatientStudy, acq: PetAcquisition, grid: Grid) -> float:
    """Header-unit value per Bq/ml of activity in the header's decay convention."""
    if style.units == "BQML":
        return 1.0
    if style.units == "CNTS":
        return counts_per_bqml(grid, acq)
    # GML / CM2ML: SUV with normaliser N instead of W: value = SUVbw x N / W
    f = suv_bw_factor(study, acq)
    return f * normaliser(style.suv_type, study.weight_kg, study.height_m, study.sex) / (study.weight_kg * 1000.0)


def quantise(values: np.ndarray, per_slice: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """16-bit integers and the RescaleSlope (as a reader parses it back) of every slice.

    Non-negative volumes use the unsigned range (0..65535), others the signed one; each slice (or
    the whole series) is scaled so that its largest magnitude fills the range."""
    signed = bool(values.min() < 0)
    top = 32767.0 if signed else 65535.0
    peak = np.abs(values).max(axis=(1, 2))
    if not per_slice:
        peak = np.full_like(peak, peak.max())
    slopes = np.array([ds_written(p / top) if p > 0 else 1.0 for p in peak])
    ints = np.clip(np.rint(values / slopes[:, None, None]), -top if signed else 0.0, top)
    return ints.astype(np.int16 if signed else np.uint16), slopes, signed


# --- truth ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PetHeaderTruth:
    """What a correct SUV reader must find in one written PET series (for truth.json)."""

    vendor: str
    description: str
    units: str
    decay_correction: str
    suv_type: str | None  # SUVType as written; None when the header has none
    suv_bw_factor: float  # true SUVbw = activity_bqml (decay-corrected to scan start) x this
    stored_to_suv_bw: tuple[float, ...]  # SUVbw of slice k = stored integer x this[k]
    stored_to_activity_bqml: tuple[float, ...]  # true activity of slice k = stored integer x this[k]
    rescale_slopes: tuple[float, ...]
    pixel_representation: int
    reference_datetime: str | None  # decay-correction reference (START: scan start, ADMIN: injection)
    scan_start: str  # ISO; start of bed 0 as written (after any shift)
    injection_datetime: str
    time_shift_s: float  # added to every PET time (midnight variant)
    series_datetime: str
    dose_bq: float
    dose_header_value: float
    dose_unit: str
    weight_kg: float
    weight_header_value: float
    weight_unit: str
    height_m: float
    sex: str
    half_life_s: float
    frame_duration_s: float
    bed_of_slice: tuple[int, ...]
    bed_start: tuple[str, ...]
    philips_suv_scale_factor: tuple[float, ...] | None
    philips_activity_scale_factor: float | None
    ge_scan_datetime: str | None
    series_instance_uid: str
    n_slices: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
