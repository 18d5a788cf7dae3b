"""Reading single values out of DICOM headers without trusting them.

Headers are written by hand, by old software and by anonymisers, so every reader here returns
``None`` for an absent or empty attribute and raises :class:`BadValue` (naming the attribute and
its tag) for a value that cannot be parsed. Callers turn ``BadValue`` into an ``InputError``
that also names the series. Dates and times come back as naive ``datetime`` objects in the
scanner's local time (DICOM DA / TM carry no time zone; a DT offset is converted to the
dataset's TimezoneOffsetFromUTC when that is given, then dropped).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


class BadValue(ValueError):
    """An attribute is present but its value cannot be used."""


def attribute_name(keyword: str) -> str:
    """``"PatientWeight (0010,1030)"`` for a keyword (the form used in error messages)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _raw(ds: Dataset, keyword: str) -> Any:
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (list, MultiValue)) and len(value) == 0:
        return None
    return value


def text(ds: Dataset, keyword: str) -> str | None:
    """The stripped string value (multi-valued: values joined by a backslash), or None."""
    value = _raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip() or None


def words(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The upper-cased values of a multi-valued code string (e.g. CorrectedImage); () if absent."""
    value = _raw(ds, keyword)
    if value is None:
        return ()
    items = value if isinstance(value, (list, MultiValue)) else str(value).split("\\")
    return tuple(str(v).strip().upper() for v in items if str(v).strip())


def number(ds: Dataset, keyword: str) -> float | None:
    """A finite float from a DS / IS / FD value (first value if several), or None when absent."""
    value = _raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, (list, MultiValue)):
        value = value[0]
    try:
        out = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        raise BadValue(f"{attribute_name(keyword)} is {str(value)[:40]!r}, not a number") from None
    if not math.isfinite(out):
        raise BadValue(f"{attribute_name(keyword)} is {out}, not a finite number")
    return out


def numbers(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Exactly ``count`` finite floats of a multi-valued numeric attribute, or None when absent."""
    value = _raw(ds, keyword)
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, MultiValue)) else str(value).split("\\")
    try:
        out = tuple(float(str(v).strip()) for v in items)
    except (TypeError, ValueError):
        raise BadValue(f"{attribute_name(keyword)} is {str(value)[:60]!r}, not {count} numbers") from None
    if len(out) != count or not all(math.isfinite(v) for v in out):
        raise BadValue(f"{attribute_name(keyword)} is {str(value)[:60]!r}, expected {count} finite numbers")
    return out


# --- dates and times -----------------------------------------------------------------------------

_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"^(\d{8})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def parse_da(value: str) -> date:
    """DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) to a date; ValueError otherwise."""
    m = _DA.match(value.strip())
    if not m:
        raise ValueError(value)
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_tm(value: str) -> time:
    """DICOM TM (HH[MM[SS[.F{1,6}]]], or the old HH:MM:SS) to a time; ValueError otherwise."""
    m = _TM.match(value.strip())
    if not m:
        raise ValueError(value)
    hh, mm, ss = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    micro = int((m.group(4) or "0").ljust(6, "0"))
    return time(hh, mm, min(ss, 59), micro)  # a leap second 60 becomes 59


def parse_dt(value: str, local_offset: str | None = None) -> datetime:
    """DICOM DT (at least YYYYMMDDHHMM) to a naive local datetime; ValueError otherwise.

    A UTC offset in the value is converted to ``local_offset`` (TimezoneOffsetFromUTC, "+HHMM")
    when that is given, and dropped otherwise."""
    m = _DT.match(value.strip())
    if not m:
        raise ValueError(value)
    day = parse_da(m.group(1))
    micro = int((m.group(5) or "0").ljust(6, "0"))
    out = datetime(day.year, day.month, day.day, int(m.group(2)), int(m.group(3)), min(int(m.group(4) or 0), 59), micro)
    if m.group(6) and local_offset:
        try:
            out = out.replace(tzinfo=_offset(m.group(6))).astimezone(_offset(local_offset)).replace(tzinfo=None)
        except ValueError:
            pass  # an unusable local offset: keep the value's own clock time
    return out


def _offset(text_value: str) -> timezone:
    m = re.match(r"^([+-])(\d{2})(\d{2})$", text_value.strip())
    if not m:
        raise ValueError(text_value)
    sign = 1 if m.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def date_value(ds: Dataset, keyword: str) -> date | None:
    """A DA attribute as a date, None when absent; BadValue when unparsable."""
    value = text(ds, keyword)
    if value is None:
        return None
    try:
        return parse_da(value)
    except ValueError:
        raise BadValue(f"{attribute_name(keyword)} is {value[:30]!r}, not a DICOM date (YYYYMMDD)") from None


def time_value(ds: Dataset, keyword: str) -> time | None:
    """A TM attribute as a time, None when absent; BadValue when unparsable."""
    value = text(ds, keyword)
    if value is None:
        return None
    try:
        return parse_tm(value)
    except ValueError:
        raise BadValue(f"{attribute_name(keyword)} is {value[:30]!r}, not a DICOM time (HHMMSS.FFFFFF)") from None


def datetime_value(ds: Dataset, keyword: str, local_offset: str | None = None) -> datetime | None:
    """A DT attribute as a naive local datetime, None when absent; BadValue when unparsable."""
    value = text(ds, keyword)
    if value is None:
        return None
    try:
        return parse_dt(value, local_offset)
    except ValueError:
        raise BadValue(f"{attribute_name(keyword)} is {value[:30]!r}, not a DICOM date-time (YYYYMMDDHHMMSS)") from None


def private_text(ds: Dataset, group: int, creator: str, offset: int) -> str | None:
    """Value of a private element (e.g. GE (0009,xx0D) of creator 'GEMS_PETD_01') as text.

    The block is found through its private creator; a file without any creator in ``group``
    (some anonymisers drop it) falls back to the element at the conventional (group,10xx) slot."""
    try:
        element = ds.private_block(group, creator)[offset] if offset in ds.private_block(group, creator) else None
    except KeyError:
        has_creator = any(ds.get((group, e)) is not None for e in range(0x10, 0x100))
        element = ds.get((group, 0x1000 | offset)) if not has_creator else None
    if element is None or element.value is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, (list, MultiValue)):
        value = value[0] if len(value) else ""
    value = str(value).replace("\x00", "").strip()
    return value or None
