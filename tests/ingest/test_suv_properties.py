"""Property-based tests (hypothesis) on PET header fields: SUV or a clear InputError, never a crash."""

from __future__ import annotations

import math

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (requirements.txt lists it for the test suite)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402

from nstage.errors import InputError  # noqa: E402
from nstage.ingest.suv import SUV_TYPES, SuvInfo, suv_factors  # noqa: E402
from tests.study_factory import pet_header, set_raw  # noqa: E402

FIELDS = (
    "PatientWeight", "PatientSize", "PatientSex", "Units", "DecayCorrection", "SUVType", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "StudyDate", "RescaleSlope", "RescaleIntercept",
    "ActualFrameDuration", "FrameReferenceTime", "CorrectedImage", "DoseCalibrationFactor", "PixelSpacing",
    "SliceThickness", "TimezoneOffsetFromUTC", "DecayCorrectionDateTime",
    "iso_RadionuclideTotalDose", "iso_RadionuclideHalfLife", "iso_RadiopharmaceuticalStartTime",
    "iso_RadiopharmaceuticalStartDateTime",
)  # fmt: skip

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(lambda v: repr(v)),
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["0", "-1", "1e308", "1e-308", "70000", "368.08", "0.0005", "", " ", "NaN"]),
)
times = st.one_of(
    st.builds(lambda h, m, s, f: f"{h:02d}{m:02d}{s:02d}{f}", st.integers(0, 30), st.integers(0, 70), st.integers(0, 70),
              st.sampled_from(["", ".5", ".123456", ".1234567"])),
    st.sampled_from(["10:00:00", "1", "2400", "235960", "-100000"]),
)
dates = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}{m:02d}{d:02d}", st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)),
    st.sampled_from(["2025.01.01", "20250101", "20241231", "19000101"]),
)
codes = st.sampled_from(["BQML", "CNTS", "GML", "CM2ML", "CPS", "PROPCPS", "START", "ADMIN", "NONE", "BW", "LBM", "LBMJAMES128",
                         "LBMJANMA", "IBW", "BSA", "M", "F", "O", "ATTN\\DCAL", "+0100", "-0530", "x"])
values = st.one_of(st.none(), numbers, times, dates, codes, st.builds(lambda d, t: d + t, dates, times),
                   st.text(max_size=24).map(lambda s: s.encode("utf-8", "replace")))


def _apply(ds: Dataset, field: str, value: object) -> None:
    target = ds
    if field.startswith("iso_"):
        target, field = ds.RadiopharmaceuticalInformationSequence[0], field[4:]
    if value is None:
        if field in target:
            delattr(target, field)
        return
    raw = value if isinstance(value, bytes) else str(value).encode("latin-1", "replace")
    set_raw(target, field, raw + (b" " if len(raw) % 2 else b""))


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    changes=st.lists(st.tuples(st.sampled_from(FIELDS), values), max_size=6),
    second=st.lists(st.tuples(st.sampled_from(FIELDS), values), max_size=2),
    suv_type=st.sampled_from(list(SUV_TYPES)),
)
def test_any_header_gives_suv_or_a_clear_error(changes: list, second: list, suv_type: str) -> None:
    first, other = pet_header(), pet_header(AcquisitionTime="110300")
    for field, value in changes:
        _apply(first, field, value)
        _apply(other, field, value)
    for field, value in second:  # slices that disagree
        _apply(other, field, value)
    try:
        info = suv_factors([first, other], suv_type, label="series 5 PET")
    except InputError as e:
        assert str(e).startswith(("series 5 PET: ", "unknown SUV type")) and len(str(e)) > 30
        return
    assert isinstance(info, SuvInfo) and len(info.scale_factors) == 2
    assert all(math.isfinite(f) and f > 0 for f in info.scale_factors)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    weight=st.floats(0.5, 500.0), height=st.floats(0.3, 2.6), sex=st.sampled_from(["M", "F", "O", ""]),
    dose_mbq=st.floats(0.2, 100000.0), uptake_min=st.integers(0, 600),
)
def test_plausible_headers_always_give_suv(weight: float, height: float, sex: str, dose_mbq: float, uptake_min: int) -> None:
    hh, mm = divmod(11 * 60 - uptake_min, 60)
    ds = pet_header(PatientWeight=f"{weight:.6g}", PatientSize=f"{height:.6g}", PatientSex=sex or None,
                    iso_RadionuclideTotalDose=f"{dose_mbq * 1e6:.8g}", iso_RadiopharmaceuticalStartDateTime=None,
                    iso_RadiopharmaceuticalStartTime=f"{hh % 24:02d}{mm:02d}00")
    try:
        info = suv_factors([ds], "bw")
    except InputError as e:  # only the documented refusals may remain
        assert "implausible" in str(e) or "non-positive" in str(e), str(e)
        return
    lam = math.log(2.0) / 6586.2
    expected = float(f"{weight:.6g}") * 1000.0 / (float(f"{dose_mbq * 1e6:.8g}") * math.exp(-lam * uptake_min * 60.0))
    assert info.scale_factors[0] == pytest.approx(expected, rel=1e-9)
