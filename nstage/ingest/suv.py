"""Vendor-neutral SUV from PET DICOM headers.

The rules are those of the SUV manual (Vácha et al., oncoray/suv_computation, CC BY 4.0;
``docs/reference/suv-manual-oncoray.txt``) summarised in clinical-rules.md section 4. For every
slice ``k`` this module finds the factor ``f[k]`` such that

    SUV = (stored x RescaleSlope[k] + RescaleIntercept) x f[k]      (intercept must be 0)

Source units (0054,1001):
- BQML: activity concentration; f = N / D_ref, with N the normaliser of the output SUV type
  (body weight in g for SUVbw) and D_ref the injected dose decayed to the images' time point.
- CNTS: Philips (7053,1000) SUV scale factor (SUVbw directly) when non-zero on every slice,
  else (7053,1009) activity concentration scale factor (Bq/ml), else counts / frame seconds ->
  CPS.
- CPS: Bq/ml = CPS / voxel ml when CorrectedImage has DCAL, else x DoseCalibrationFactor.
- GML: an SUV already (SUVType BW, LBM, LBMJAMES128, LBMJANMA or IBW; empty = BW); converted
  back to SUVbw with the weight and the SUVType's normaliser. CM2ML: SUVbsa (Du Bois).
- anything else (PROPCNTS, PROPCPS, 1CM, ...) cannot be converted: error.

Decay correction (0054,1102): ADMIN -> D_ref = dose. START -> D_ref = dose x exp(-lambda
(t_ref - t_inj)), t_ref chosen in this order: DecayCorrectionDateTime (0018,9701); GE private
PET scan datetime (0009,100D); SeriesDate/Time when not later than the earliest acquisition;
back-computed ``t_acq + T_ave - FrameReferenceTime`` (manual option 4) when consistent; the
earliest AcquisitionDate/Time. NONE -> per slice, the manual's formula
``f = N/dose x lambda T / (1 - exp(-lambda T)) x exp(lambda (t_acq - t_inj))``.

Corrections made with a warning (``SuvInfo.notes``): dose below 1e5 is MBq; weight above 1000 is
grams; height above 3 is cm; GML without SUVType is BW; only RadiopharmaceuticalStartTime: dated
on the scan day, or the day before when that puts it after the scan (injection before midnight);
a RadiopharmaceuticalStartDateTime not within the day before the scan while a StartTime is given
(anonymised dates): the StartTime is used; no half-life: from the radionuclide code; PatientSex
other than M/F: mean of the male and female formulas. Missing weight, dose, injection time or
half-life where needed, unknown units, a non-zero intercept and implausible values are
``InputError`` naming the attribute.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset

from nstage.errors import InputError
from nstage.ingest.dicom_values import (
    BadValue,
    attribute_name,
    date_value,
    datetime_value,
    number,
    numbers,
    parse_dt,
    private_text,
    text,
    time_value,
    words,
)
from nstage.ingest.radionuclides import identify

log = logging.getLogger("nstage.ingest.suv")

# output SUV type (command line) -> DICOM SUVType of its normaliser
SUV_TYPES: dict[str, str] = {"bw": "BW", "lbm": "LBMJAMES128", "lbm-janma": "LBMJANMA", "bsa": "BSA", "ibw": "IBW"}
SOURCE_SUV_TYPES = ("BW", "LBM", "LBMJAMES128", "LBMJANMA", "IBW", "BSA")
DOSE_MBQ_BELOW = 1.0e5  # a RadionuclideTotalDose below 100 kBq was written in MBq (manual, Fig. 2)
DOSE_RANGE_BQ = (1.0e5, 1.0e11)
WEIGHT_GRAMS_ABOVE = 1000.0  # manual: "Values exceeding 1000 indicate that the weight was entered in grams"
WEIGHT_RANGE_KG = (0.5, 500.0)
HEIGHT_CM_ABOVE = 3.0
HEIGHT_RANGE_M = (0.3, 2.6)
MAX_DECAY_EXPONENT = 10.0  # lambda x (scan - injection) beyond ~14 half-lives: dates are wrong
PHILIPS_CREATOR = "Philips PET Private Group"
GE_PET_CREATOR = "GEMS_PETD_01"


# --- body-size normalisers (manual, "Units = GML" and "Units = CM2ML") ---------------------------


def _sex_mean(sex: str, male: float, female: float) -> float:
    """Male or female value; the mean of both for any other PatientSex (manual: "O")."""
    return male if sex == "M" else female if sex == "F" else 0.5 * (male + female)


def body_mass_kg(kind: str, weight_kg: float, height_m: float, sex: str) -> float:
    """Body weight, lean body mass or ideal body weight in kg for a DICOM SUVType.

    LBM (Morgan): 1.10 W - 120 (W/H)^2 (M), 1.07 W - 148 (W/H)^2 (F), H in cm;
    LBMJAMES128: as LBM with 128 for men; LBMJANMA: 9270 W / (6680 + 216 BMI) (M),
    9270 W / (8780 + 244 BMI) (F); IBW: 48.0 + 1.06 (H - 152) (M), 45.5 + 0.91 (H - 152) (F)."""
    w, h_cm = weight_kg, height_m * 100.0
    if kind == "BW":
        return w
    if kind in ("LBM", "LBMJAMES128"):
        k_male = 120.0 if kind == "LBM" else 128.0
        return _sex_mean(sex, 1.10 * w - k_male * (w / h_cm) ** 2, 1.07 * w - 148.0 * (w / h_cm) ** 2)
    if kind == "LBMJANMA":
        bmi = w / height_m**2
        return _sex_mean(sex, 9270.0 * w / (6680.0 + 216.0 * bmi), 9270.0 * w / (8780.0 + 244.0 * bmi))
    if kind == "IBW":
        return _sex_mean(sex, 48.0 + 1.06 * (h_cm - 152.0), 45.5 + 0.91 * (h_cm - 152.0))
    raise ValueError(f"not a body-mass SUVType: {kind!r}")


def body_surface_m2(weight_kg: float, height_m: float) -> float:
    """Du Bois body surface area: 0.007184 H^0.725 W^0.425 (H in cm, W in kg)."""
    return 0.007184 * (height_m * 100.0) ** 0.725 * weight_kg**0.425


def normaliser(kind: str, weight_kg: float, height_m: float, sex: str) -> float:
    """The SUV denominator's body quantity: grams for BW/LBM*/IBW, cm^2 for BSA."""
    if kind == "BSA":
        return body_surface_m2(weight_kg, height_m) * 1.0e4
    return body_mass_kg(kind, weight_kg, height_m, sex) * 1000.0


# --- result --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuvInfo:
    """How SUV was derived from one PET series; ``scale_factors`` in slice order."""

    suv_type: str  # output: bw | lbm | lbm-janma | bsa | ibw
    suv_units: str  # g/ml or cm2/ml
    units: str  # Units (0054,1001) of the source
    decay_correction: str | None  # DecayCorrection (0054,1102) of the source
    method: str
    scale_factors: tuple[float, ...]
    source_suv_type: str | None = None
    reference_time: str | None = None
    reference_time_source: str | None = None
    injection_time: str | None = None
    dose_bq: float | None = None
    half_life_s: float | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def scale_factor(self) -> float | list[float]:
        """One number when every slice has the same factor, else the list per slice."""
        f = self.scale_factors
        if all(math.isclose(v, f[0], rel_tol=1e-12, abs_tol=0.0) for v in f):
            return f[0]
        return list(f)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``scale_factor`` as a number or per-slice list)."""
        d = asdict(self)
        d.pop("scale_factors")
        d["scale_factor"] = self.scale_factor
        d["notes"] = list(self.notes)
        return d


# --- header reading ------------------------------------------------------------------------------


class _Reader:
    """Series-level facts of one PET series, each read once, with the notes of any correction."""

    def __init__(self, headers: Sequence[Dataset], label: str) -> None:
        if not headers:
            raise InputError(f"{label}: no slices")
        self.headers = list(headers)
        self.first = self.headers[0]
        self.label = label
        self.notes: list[str] = []
        seq = self.first.get("RadiopharmaceuticalInformationSequence")
        self.isotope: Dataset | None = seq[0] if seq else None
        self.tz = text(self.first, "TimezoneOffsetFromUTC")
        self.used: dict[str, Any] = {}  # weight_kg / height_m / sex as read (for the summary)

    def error(self, problem: str, action: str) -> InputError:
        return InputError(f"{self.label}: {problem}; {action}")

    def note(self, message: str) -> None:
        self.notes.append(message)

    def same_text(self, keyword: str) -> str | None:
        """Upper-cased value that must be equal on every slice."""
        values = {(text(h, keyword) or "").upper() for h in self.headers}
        if len(values) > 1:
            raise self.error(f"{attribute_name(keyword)} differs between slices ({', '.join(sorted(values))})", "export one consistent series")
        return values.pop() or None

    def require_isotope(self) -> Dataset:
        if self.isotope is None:
            raise self.error(f"{attribute_name('RadiopharmaceuticalInformationSequence')} is missing (no injection time, dose or half-life)",
                             "export the PET with its PET Isotope module")
        return self.isotope

    def isotope_number(self, keyword: str) -> float | None:
        return number(self.require_isotope(), keyword)

    # body ----------------------------------------------------------------------------------------

    def weight_kg(self) -> float:
        if "weight_kg" not in self.used:
            self.used["weight_kg"] = self._weight_kg()
        return float(self.used["weight_kg"])

    def height_m(self) -> float:
        if "height_m" not in self.used:
            self.used["height_m"] = self._height_m()
        return float(self.used["height_m"])

    def sex(self) -> str:
        if "sex" not in self.used:
            self.used["sex"] = self._sex()
        return str(self.used["sex"])

    def _weight_kg(self) -> float:
        w = number(self.first, "PatientWeight")
        if w is None or w <= 0:
            raise self.error(f"{attribute_name('PatientWeight')} is {'missing' if w is None else w}; SUV needs the patient's weight",
                             "enter the weight in kg and export the series again")
        if w > WEIGHT_GRAMS_ABOVE:
            self.note(f"PatientWeight {w:g} > {WEIGHT_GRAMS_ABOVE:g}: taken as grams ({w / 1000.0:g} kg)")
            w /= 1000.0
        if not WEIGHT_RANGE_KG[0] <= w <= WEIGHT_RANGE_KG[1]:
            raise self.error(f"{attribute_name('PatientWeight')} gives an implausible {w:g} kg", "correct the weight (kg)")
        return w

    def _height_m(self) -> float:
        h = number(self.first, "PatientSize")
        if h is None or h <= 0:
            raise self.error(f"{attribute_name('PatientSize')} (height) is {'missing' if h is None else h}; "
                             "lean-body-mass, ideal-weight and body-surface SUVs need it", "enter the height in m, or use --suv-type bw")
        if h > HEIGHT_CM_ABOVE:
            self.note(f"PatientSize {h:g} > {HEIGHT_CM_ABOVE:g}: taken as centimetres ({h / 100.0:g} m)")
            h /= 100.0
        if not HEIGHT_RANGE_M[0] <= h <= HEIGHT_RANGE_M[1]:
            raise self.error(f"{attribute_name('PatientSize')} gives an implausible height of {h:g} m", "correct the height (m)")
        return h

    def _sex(self) -> str:
        s = (text(self.first, "PatientSex") or "").upper()
        if s not in ("M", "F"):
            self.note(f"PatientSex {s or 'missing'}: mean of the male and female formulas")
        return s if s in ("M", "F") else "O"

    def normaliser(self, kind: str) -> float:
        """Normaliser for SUVType ``kind`` from the header's weight / height / sex."""
        if kind == "IBW":
            value = normaliser(kind, 1.0, self.height_m(), self.sex())
        elif kind == "BW":
            value = self.weight_kg() * 1000.0
        else:
            value = normaliser(kind, self.weight_kg(), self.height_m(), self.sex())
        if not (value > 0 and math.isfinite(value)):
            raise self.error(f"SUVType {kind} gives a non-positive normaliser ({value:.4g}) for this weight and height",
                             "check PatientWeight and PatientSize")
        return value

    # dose and decay ------------------------------------------------------------------------------

    def dose_bq(self) -> float:
        d = self.isotope_number("RadionuclideTotalDose")
        if d is None or d <= 0:
            raise self.error(f"{attribute_name('RadionuclideTotalDose')} (in RadiopharmaceuticalInformationSequence) is "
                             f"{'missing' if d is None else d}; SUV needs the injected dose", "enter the dose in Bq and export again")
        if d < DOSE_MBQ_BELOW:
            self.note(f"RadionuclideTotalDose {d:g} < {DOSE_MBQ_BELOW:g}: taken as MBq")
            d *= 1.0e6
        if not DOSE_RANGE_BQ[0] <= d <= DOSE_RANGE_BQ[1]:
            raise self.error(f"{attribute_name('RadionuclideTotalDose')} gives an implausible {d:.4g} Bq", "correct the dose (Bq)")
        return d

    def half_life_s(self) -> float:
        t = self.isotope_number("RadionuclideHalfLife")
        nuclide = identify(self.require_isotope())
        if t is not None and t > 0:
            if nuclide and abs(t / nuclide.half_life_s - 1.0) > 0.05:
                self.note(f"RadionuclideHalfLife {t:g} s differs from {nuclide.symbol} ({nuclide.half_life_s:g} s); the header's value is used")
            return t
        if nuclide is None:
            raise self.error(f"{attribute_name('RadionuclideHalfLife')} is {'missing' if t is None else t} and "
                             f"{attribute_name('RadionuclideCodeSequence')} names no known radionuclide", "fill in the half-life (s)")
        self.note(f"RadionuclideHalfLife missing: {nuclide.half_life_s:g} s of {nuclide.symbol} from RadionuclideCodeSequence")
        return nuclide.half_life_s

    # times ---------------------------------------------------------------------------------------

    def _day(self, h: Dataset, *keywords: str) -> date | None:
        for kw in keywords:
            d = date_value(h, kw)
            if d is not None:
                return d
        return None

    def acquisition(self, h: Dataset) -> datetime | None:
        """AcquisitionDateTime, else AcquisitionDate (or Series/Study date) + AcquisitionTime."""
        dt = datetime_value(h, "AcquisitionDateTime", self.tz)
        if dt is not None:
            return dt
        t = time_value(h, "AcquisitionTime")
        day = self._day(h, "AcquisitionDate", "SeriesDate", "StudyDate")
        return datetime.combine(day, t) if t is not None and day is not None else None

    def series_time(self) -> datetime | None:
        t = time_value(self.first, "SeriesTime")
        day = self._day(self.first, "SeriesDate", "StudyDate")
        return datetime.combine(day, t) if t is not None and day is not None else None

    def earliest_acquisition(self) -> datetime | None:
        times = [t for t in (self.acquisition(h) for h in self.headers) if t is not None]
        return min(times) if times else None

    def injection(self, anchor: datetime) -> datetime:
        """Injection date-time; a time without date is placed on ``anchor``'s day or the day before."""
        isotope = self.require_isotope()
        dt = datetime_value(isotope, "RadiopharmaceuticalStartDateTime", self.tz)
        tm = time_value(isotope, "RadiopharmaceuticalStartTime")
        if dt is not None:
            if tm is not None and abs((datetime.combine(dt.date(), tm) - dt).total_seconds()) > 1.0:
                self.note("RadiopharmaceuticalStartTime differs from RadiopharmaceuticalStartDateTime; the date-time is used")
            if tm is None or timedelta(0) <= anchor - dt <= timedelta(days=1):
                return dt
            self.note(f"RadiopharmaceuticalStartDateTime {dt.isoformat()} is not within the day before the scan "
                      "(dates shifted by an anonymiser?): RadiopharmaceuticalStartTime is used")
        if tm is None:
            raise self.error(f"injection time missing: neither {attribute_name('RadiopharmaceuticalStartDateTime')} nor "
                             f"{attribute_name('RadiopharmaceuticalStartTime')} is set", "enter the injection time and export again")
        out = datetime.combine(anchor.date(), tm)
        if out > anchor:
            out -= timedelta(days=1)
            self.note("only RadiopharmaceuticalStartTime, later in the day than the scan: injection taken on the day before (over midnight)")
        return out

    def reference_time(self, half_life_s: float) -> tuple[datetime, str]:
        """The START decay-correction reference time and where it came from."""
        exact = datetime_value(self.first, "DecayCorrectionDateTime", self.tz)
        if exact is not None:
            return exact, "DecayCorrectionDateTime (0018,9701)"
        ge = private_text(self.first, 0x0009, GE_PET_CREATOR, 0x0D)
        if ge is not None:
            try:
                return parse_dt(ge, self.tz), "GE private PET scan datetime (0009,100D)"
            except ValueError:
                raise BadValue(f"GE private PET scan datetime (0009,100D) is {ge[:30]!r}, not a DICOM date-time") from None
        series, earliest = self.series_time(), self.earliest_acquisition()
        if series is not None and (earliest is None or series <= earliest):
            return series, "SeriesDate/SeriesTime"
        if earliest is None:
            raise self.error(f"no scan time: {attribute_name('SeriesTime')} and {attribute_name('AcquisitionTime')} are missing",
                             "export the series with its acquisition times")
        back = self._back_computed(half_life_s, earliest)
        if back is not None:
            return back, "back-computed from AcquisitionTime, ActualFrameDuration and FrameReferenceTime (SeriesTime is later than the acquisition)"
        self.note("SeriesTime is later than the earliest AcquisitionTime and FrameReferenceTime is unusable: the earliest AcquisitionTime is the reference")
        return earliest, "earliest AcquisitionDate/AcquisitionTime"

    def _back_computed(self, half_life_s: float, earliest: datetime) -> datetime | None:
        """``t_acq + T_ave - FrameReferenceTime`` over the slices (median), or None if not consistent."""
        lam = math.log(2.0) / half_life_s
        estimates = []
        for h in self.headers:
            acq = self.acquisition(h)
            frame_ms, ref_ms = number(h, "ActualFrameDuration"), number(h, "FrameReferenceTime")
            if acq is None or frame_ms is None or ref_ms is None or frame_ms <= 0 or ref_ms < 0:
                return None
            t = frame_ms / 1000.0
            t_ave = math.log(lam * t / -math.expm1(-lam * t)) / lam
            estimates.append(acq + timedelta(seconds=t_ave - ref_ms / 1000.0))
        estimates.sort()
        mid = estimates[len(estimates) // 2]
        if (estimates[-1] - estimates[0]).total_seconds() > 5.0 or mid > earliest + timedelta(seconds=1.0):
            return None
        return mid


# --- per-unit factors ----------------------------------------------------------------------------


def _decay_factors(r: _Reader, dc: str | None) -> tuple[list[float], dict[str, Any]]:
    """Per-slice ``decay`` such that f = N x activity_scale x decay / dose, and what was used."""
    n = len(r.headers)
    if dc == "ADMIN":
        return [1.0] * n, {}
    if dc not in ("START", "NONE"):
        raise r.error(f"{attribute_name('DecayCorrection')} is {dc or 'missing'}, expected START, ADMIN or NONE",
                      "the time point of the activity is unknown, so the dose cannot be decay-corrected")
    half_life = r.half_life_s()
    lam = math.log(2.0) / half_life
    if dc == "START":
        t_ref, source = r.reference_time(half_life)
        t_inj = r.injection(t_ref)
        exponent = lam * (t_ref - t_inj).total_seconds()
        _check_uptake(r, exponent, t_ref, t_inj, half_life)
        info = {"reference_time": t_ref.isoformat(), "reference_time_source": source, "injection_time": t_inj.isoformat(), "half_life_s": half_life}
        return [math.exp(exponent)] * n, info
    acq = [r.acquisition(h) for h in r.headers]
    if any(a is None for a in acq):
        raise r.error(f"DecayCorrection NONE needs {attribute_name('AcquisitionTime')} on every slice", "export the series with its acquisition times")
    t_inj = r.injection(min(a for a in acq if a is not None))
    out = []
    for h, a in zip(r.headers, acq):
        assert a is not None
        frame_ms = number(h, "ActualFrameDuration")
        if frame_ms is None or frame_ms < 0:
            raise r.error(f"DecayCorrection NONE needs {attribute_name('ActualFrameDuration')} on every slice", "export the series with its frame durations")
        lt = lam * frame_ms / 1000.0
        exponent = lam * (a - t_inj).total_seconds()
        _check_uptake(r, exponent, a, t_inj, half_life)
        out.append((lt / -math.expm1(-lt) if lt > 0 else 1.0) * math.exp(exponent))
    return out, {"injection_time": t_inj.isoformat(), "half_life_s": half_life, "reference_time_source": "per-slice AcquisitionTime (no decay correction)"}


def _check_uptake(r: _Reader, exponent: float, t_scan: datetime, t_inj: datetime, half_life: float) -> None:
    if exponent < 0:
        raise r.error(f"the injection ({t_inj.isoformat()}) is after the scan time ({t_scan.isoformat()})",
                      "check RadiopharmaceuticalStartDateTime / StartTime and the series and acquisition dates")
    if exponent > MAX_DECAY_EXPONENT:
        hours = (t_scan - t_inj).total_seconds() / 3600.0
        raise r.error(f"{hours:.1f} h between injection and scan is implausible for a half-life of {half_life / 60.0:.1f} min",
                      "check the injection and scan dates")


def _activity_scales(r: _Reader, units: str) -> tuple[list[float], str]:
    """Per-slice factor from rescaled values to Bq/ml (BQML, CNTS via ACSF or CPS, CPS)."""
    n = len(r.headers)
    if units == "BQML":
        return [1.0] * n, "BQML activity concentration"
    if units == "CNTS":
        acsf = [_philips(r, h, 0x09) for h in r.headers]
        if all(v is not None and v > 0 for v in acsf):
            return [float(v) for v in acsf if v is not None], "CNTS x Philips activity concentration scale factor (7053,1009)"
        frames = [number(h, "ActualFrameDuration") for h in r.headers]
        if any(f is None or f <= 0 for f in frames):
            raise r.error("Units CNTS without Philips scale factors (7053,1000)/(7053,1009) and without "
                          f"{attribute_name('ActualFrameDuration')}", "export the series in BQML or with the scale factors")
        per_second = [1000.0 / float(f) for f in frames if f is not None]
        cps, how = _cps_to_bqml(r)
        return [p * c for p, c in zip(per_second, cps)], f"CNTS / frame duration -> CPS; {how}"
    cps, how = _cps_to_bqml(r)
    return cps, how


def _cps_to_bqml(r: _Reader) -> tuple[list[float], str]:
    """CPS -> Bq/ml per slice: / voxel ml, x DoseCalibrationFactor unless CorrectedImage has DCAL."""
    out = []
    dcal = "DCAL" in words(r.first, "CorrectedImage")
    for h in r.headers:
        spacing = numbers(h, "PixelSpacing", 2)
        thick = number(h, "SliceThickness")
        if spacing is None or thick is None or min(*spacing, thick) <= 0:
            raise r.error(f"counts need the voxel volume: {attribute_name('PixelSpacing')} or {attribute_name('SliceThickness')} missing",
                          "export the series in BQML")
        ml = spacing[0] * spacing[1] * thick / 1000.0
        if dcal:
            out.append(1.0 / ml)
            continue
        cal = number(h, "DoseCalibrationFactor")
        if cal is None or cal <= 0:
            raise r.error(f"counts without dose calibration: CorrectedImage lacks DCAL and {attribute_name('DoseCalibrationFactor')} is missing",
                          "export the series in BQML")
        out.append(cal / ml)
    if "ATTN" not in words(r.first, "CorrectedImage"):
        r.note("count-based image without ATTN in CorrectedImage: check that it is attenuation-corrected")
    return out, "CPS / voxel volume" + ("" if dcal else " x DoseCalibrationFactor (0054,1322)")


def _philips(r: _Reader, h: Dataset, offset: int) -> float | None:
    value = private_text(h, 0x7053, PHILIPS_CREATOR, offset)
    if value is None:
        return None
    try:
        out = float(value)
    except ValueError:
        raise BadValue(f"Philips private (7053,10{offset:02X}) is {value[:30]!r}, not a number") from None
    return out if math.isfinite(out) else None


def _compute(r: _Reader, suv_type: str) -> SuvInfo:
    units = r.same_text("Units")
    dc = r.same_text("DecayCorrection")
    src_type = r.same_text("SUVType")
    for h in r.headers:
        b = number(h, "RescaleIntercept")
        if b not in (None, 0.0):
            raise r.error(f"{attribute_name('RescaleIntercept')} is {b:g}; PET SUV needs 0 (SUV manual)", "this series cannot be used for SUV")
        m = number(h, "RescaleSlope")
        if m is not None and m <= 0:
            raise r.error(f"{attribute_name('RescaleSlope')} is {m:g}", "export the series again")
    out_kind = SUV_TYPES[suv_type]
    base: dict[str, Any] = {"suv_type": suv_type, "suv_units": "cm2/ml" if out_kind == "BSA" else "g/ml", "units": units or "",
                            "decay_correction": dc, "source_suv_type": src_type}
    n = len(r.headers)
    if units is None:
        raise r.error(f"{attribute_name('Units')} is missing", "the stored values have no known unit")
    if units in ("GML", "CM2ML"):
        expected = "BSA" if units == "CM2ML" else None
        kind = src_type or expected or "BW"
        if src_type is None:
            r.note(f"Units {units} without SUVType: taken as {kind}")
        if kind not in SOURCE_SUV_TYPES or (units == "CM2ML") != (kind == "BSA"):
            raise r.error(f"Units {units} with {attribute_name('SUVType')} {kind} is not a known combination", "the stored SUV cannot be converted")
        factor = 1.0 if kind == out_kind else r.normaliser(out_kind) / r.normaliser(kind)
        return SuvInfo(**base, method=f"stored {kind} SUV ({units})", scale_factors=(factor,) * n, **r.used)
    if units == "CNTS":
        sf = [_philips(r, h, 0x00) for h in r.headers]
        if all(v is not None and v > 0 for v in sf):
            to_out = 1.0 if out_kind == "BW" else r.normaliser(out_kind) / r.normaliser("BW")
            return SuvInfo(**base, method="CNTS x Philips SUV scale factor (7053,1000)", scale_factors=tuple(float(v) * to_out for v in sf if v is not None), **r.used)
    if units not in ("BQML", "CNTS", "CPS"):
        raise r.error(f"{attribute_name('Units')} {units} cannot be converted to SUV (known: BQML, CNTS, CPS, GML, CM2ML)",
                      "export the series in BQML")
    scales, method = _activity_scales(r, units)
    norm, dose = r.normaliser(out_kind), r.dose_bq()
    decay, timing = _decay_factors(r, dc)
    factors = tuple(norm * s * d / dose for s, d in zip(scales, decay))
    return SuvInfo(**base, method=method, scale_factors=factors, dose_bq=dose, **timing, **r.used)


def suv_factors(headers: Sequence[Dataset], suv_type: str = "bw", label: str = "PET series") -> SuvInfo:
    """Per-slice SUV scale factors for the PET slices ``headers`` (in volume order).

    ``suv_type``: bw | lbm (James) | lbm-janma | bsa | ibw. Raises InputError naming the series
    (``label``) and the attribute when SUV cannot be computed."""
    if suv_type not in SUV_TYPES:
        raise InputError(f"unknown SUV type {suv_type!r}; choose one of {', '.join(SUV_TYPES)}")
    r = _Reader(headers, label)
    try:
        info = _compute(r, suv_type)
    except BadValue as e:
        raise InputError(f"{label}: {e}; correct the header and export again") from None
    except (ValueError, OverflowError, ZeroDivisionError, ArithmeticError) as e:
        raise InputError(f"{label}: SUV cannot be computed from these header values ({e})") from None
    if not all(math.isfinite(f) and f > 0 for f in info.scale_factors):
        raise InputError(f"{label}: the SUV scale factor is not a positive finite number; check weight, dose and times")
    notes = tuple(dict.fromkeys(r.notes))
    for note in notes:
        log.warning("%s: %s", label, note)
    return replace(info, notes=notes)
