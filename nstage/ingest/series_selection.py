"""Choose the CT and the PET series of a study (rules in config/series_selection.json).

Two steps:

1. the ``selections`` conditions, in the JSON format of MONAI Deploy's
   ``DICOMSeriesSelectorOperator`` and evaluated with its semantics (see :func:`matches`), so the
   same file drives that operator in the app;
2. project preferences the SDK format cannot express (``preferences`` in the same file, and the
   ``_doc`` there): PET attenuation-corrected > CorrectedImage unknown > never NAC, then longest
   coverage; CT covering the thorax > not, then thinnest slices, then diagnostic (contrast, then
   tube current) over low-dose, then more slices; CT and PET from one study and one frame of
   reference.

Every refusal is an ``InputError`` that says what was found and what is missing.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from nstage.errors import InputError
from nstage.ingest.dicom_index import DicomIndex, SeriesEntry
from nstage.ingest.dicom_values import BadValue, number, text, words
from nstage.ingest.volumes import slice_summary
from nstage.paths import config_dir

log = logging.getLogger("nstage.ingest.series_selection")

# attributes the SDK exposes as DICOMSeries / DICOMStudy properties (read from a sample instance)
_SDK_PROPERTIES = (
    "SeriesInstanceUID", "SeriesDate", "SeriesTime", "Modality", "SeriesDescription", "BodyPartExamined",
    "PatientPosition", "SeriesNumber", "Laterality", "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime",
    "StudyDescription", "AccessionNumber",
)  # fmt: skip


def rules_path() -> Path:
    return config_dir() / "series_selection.json"


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Any]:
    try:
        rules = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"series selection rules {path}: {e}") from None
    names = {s.get("name") for s in rules.get("selections", [])}
    if not {"CT", "PET"} <= names:
        raise InputError(f"series selection rules {path}: need selections named CT and PET, found {sorted(map(str, names))}")
    return rules


def load_rules(path: str | Path | None = None) -> dict[str, Any]:
    """The selection rules (default: config/series_selection.json)."""
    return _load(Path(path) if path else rules_path())


def _conditions(rules: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in rules["selections"] if s.get("name") == name).get("conditions") or {}


# --- the SDK's matching semantics ----------------------------------------------------------------


def _attribute(ds: Dataset, key: str) -> Any:
    """The value the SDK matches for ``key``: a property value, else the element value
    (``[repval]`` for multi-valued elements), None when absent."""
    if key not in ds:
        return None
    element = ds[key]
    if key in _SDK_PROPERTIES:
        return int(element.value) if key == "SeriesNumber" and element.value not in (None, "") else element.value
    return [element.repval] if element.VM > 1 else element.value


def _match_number(condition: Any, value: float) -> bool:
    if isinstance(condition, list) and len(condition) == 2 and isinstance(condition[1], str):
        limit, op = float(condition[0]), condition[1]
        ops = {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit, "!=": value != limit}
        if op not in ops:
            raise InputError(f"series selection rules: unknown operator {op!r}")
        return ops[op]
    if isinstance(condition, list) and len(condition) == 2:
        return float(condition[0]) <= value <= float(condition[1])
    if isinstance(condition, str):
        return re.fullmatch(condition, str(value)) is not None
    if isinstance(condition, (int, float)):
        return condition == value
    raise InputError(f"series selection rules: unsupported numeric condition {condition!r}")


def _orientation(value: Any) -> str | None:
    """'Axial' / 'Coronal' / 'Sagittal' from the slice normal's largest component."""
    try:
        raw = value[0] if isinstance(value, list) else value
        iop = [float(v) for v in str(raw).strip("[]").split(",")] if isinstance(raw, str) else [float(v) for v in raw]
        normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:6]))
    except (TypeError, ValueError, IndexError):
        return None
    if not np.linalg.norm(normal) > 0:
        return None
    return ("Sagittal", "Coronal", "Axial")[int(np.argmax(np.abs(normal)))]


def _shown(ds: Dataset, key: str) -> str:
    """The attribute's value as a message shows it (each value of a multi-valued one)."""
    value = ds[key].value
    return str([str(v) for v in value]) if isinstance(value, (list, MultiValue)) else repr(value)


def unmet(conditions: dict[str, Any], series: SeriesEntry) -> str | None:
    """The first condition ``series`` fails, as DICOMSeriesSelectorOperator decides it (attribute,
    value found and what was asked), or None when it meets them all. Semantics: falsy conditions are
    ignored, a missing or empty attribute fails, strings match by case-insensitive equality or regex
    search, numbers by value / range / relation / regex, multi-valued attributes by
    (case-insensitive, substring) inclusion and '!' exclusion, and ImageOrientationPatient by the
    dominant axis of the slice normal (needs PatientPosition)."""
    ds = series.first
    for key, condition in conditions.items():
        if not condition:
            continue
        value = _attribute(ds, key)
        if not value:
            return f"{key} is missing or empty"  # the SDK treats a falsy attribute (missing, empty, 0) as missing
        if key == "ImageOrientationPatient":
            if not text(ds, "PatientPosition"):
                return "PatientPosition is missing (needed to test ImageOrientationPatient)"
            found = _orientation(value)
            if found != str(condition).strip().capitalize():
                return f"ImageOrientationPatient is {found or 'unreadable'}, not {condition}"
        elif isinstance(value, (int, float)):
            if not _match_number(condition, float(value)):
                return f"{key} is {value}, not {condition}"
        elif isinstance(value, str):
            if value.casefold() != str(condition).casefold() and not re.search(str(condition), value, re.IGNORECASE):
                return f"{key} is {value!r}, not {condition!r}"
        elif isinstance(value, (list, MultiValue)):
            haystack = str(list(value)).lower()
            for term in (str(c).lower() for c in (condition if isinstance(condition, list) else [condition])):
                if term.startswith("!") and term[1:] in haystack:
                    return f"{key} is {_shown(ds, key)}: it has {term[1:].upper()}"
                if not term.startswith("!") and term not in haystack:
                    return f"{key} is {_shown(ds, key)}: it lacks {term.upper()}"
        else:
            return f"{key} is {_shown(ds, key)}, which the selection rules cannot compare"
    return None


def matches(conditions: dict[str, Any], series: SeriesEntry) -> bool:
    """Whether ``series`` meets ``conditions`` as DICOMSeriesSelectorOperator decides it (:func:`unmet`)."""
    return unmet(conditions, series) is None


def _refused(index: DicomIndex, name: str, modality: str, rules: dict[str, Any]) -> str:
    """' (series X: the condition it fails; ...)' for the series of ``modality`` that selection ``name`` refused."""
    conditions = _conditions(rules, name)
    found = [f"{s.label}: {unmet(conditions, s)}" for s in index.by_modality(modality)]
    return f" ({modality} series not meeting the {name} conditions: {'; '.join(found)})" if found else ""


def matching(index: DicomIndex, name: str, rules: dict[str, Any] | None = None) -> list[SeriesEntry]:
    """Series of ``index`` that meet the conditions of selection ``name`` ("CT" or "PET")."""
    conditions = _conditions(rules or load_rules(), name)
    return [s for s in index.series if matches(conditions, s)]


# --- project preferences -------------------------------------------------------------------------


def attenuation_corrected(series: SeriesEntry) -> bool | None:
    """True when CorrectedImage has ATTN, False when it is present without ATTN, None when absent."""
    corrected = words(series.first, "CorrectedImage")
    return ("ATTN" in corrected) if corrected else None


def original_activity(series: SeriesEntry) -> bool:
    """Whether the PET holds the scanner's own activity values: ImageType ORIGINAL and Units BQML
    (not a workstation's DERIVED export, nor values already in SUV: GML, CM2ML)."""
    image_type = words(series.first, "ImageType")
    return bool(image_type) and image_type[0] == "ORIGINAL" and (text(series.first, "Units") or "").upper() == "BQML"


def _pet_key(series: SeriesEntry) -> tuple[float, ...]:
    summary = slice_summary(series)
    ac = attenuation_corrected(series)
    return (0.0 if ac else 1.0, 0.0 if original_activity(series) else 1.0, -(summary.extent_mm if summary else 0.0), -len(series.instances))


def _safe_number(ds: Dataset, keyword: str) -> float:
    try:
        return number(ds, keyword) or 0.0
    except BadValue:
        return 0.0


def _ct_key(series: SeriesEntry, min_extent_mm: float) -> tuple[float, ...]:
    summary = slice_summary(series)
    covers = summary is not None and summary.extent_mm >= min_extent_mm
    contrast = bool(text(series.first, "ContrastBolusAgent") or series.first.get("ContrastBolusAgentSequence"))
    return (
        0.0 if covers else 1.0,
        summary.spacing_mm if summary else float("inf"),
        0.0 if contrast else 1.0,
        -_safe_number(series.first, "XRayTubeCurrent"),
        -len(series.instances),
    )


def ranked_pet(index: DicomIndex, rules: dict[str, Any] | None = None) -> list[SeriesEntry]:
    """Usable PET series, best first; InputError when there is none (or only NAC)."""
    rules = rules or load_rules()
    found = matching(index, "PET", rules)
    if not found:
        hint = _refused(index, "PET", "PT", rules)
        raise InputError(f"no PET series in {index.root}{hint}; found {index.summary()}. Give the folder with the study's PET (Modality PT)")
    usable = [s for s in found if attenuation_corrected(s) is not False]
    if not usable:
        raise InputError(f"no attenuation-corrected PET in {index.root}: CorrectedImage (0028,0051) has no ATTN in "
                         f"{'; '.join(s.label for s in found)}, and the SUV of a non-attenuation-corrected (NAC) PET is meaningless; "
                         "add the attenuation-corrected PET series")
    for s in found:
        if attenuation_corrected(s) is False:
            log.info("%s: not attenuation-corrected, not used", s.label)
        elif attenuation_corrected(s) is None:
            log.warning("%s: CorrectedImage missing; attenuation correction assumed", s.label)
    return sorted(usable, key=_pet_key)


def ranked_ct(index: DicomIndex, rules: dict[str, Any] | None = None) -> list[SeriesEntry]:
    """CT series meeting the conditions, best first; InputError when there is none."""
    rules = rules or load_rules()
    found = matching(index, "CT", rules)
    if not found:
        hint = _refused(index, "CT", "CT", rules)
        raise InputError(f"no CT series in {index.root}{hint}; found {index.summary()}. Give the folder with the study's axial CT")
    min_extent = float(rules.get("preferences", {}).get("ct_thorax_min_extent_mm", 200.0))
    return sorted(found, key=lambda s: _ct_key(s, min_extent))


@dataclass(frozen=True)
class Selection:
    """The CT and PET series to use, from one study and frame of reference."""

    ct: SeriesEntry
    pet: SeriesEntry


def _same_frame(ct: SeriesEntry, pet: SeriesEntry) -> bool:
    return ct.study_uid == pet.study_uid and bool(ct.frame_of_reference_uid) and ct.frame_of_reference_uid == pet.frame_of_reference_uid


def select_ct_pet(index: DicomIndex, rules: dict[str, Any] | None = None) -> Selection:
    """The best PET and, among CTs of its study and frame of reference, the best CT."""
    rules = rules or load_rules()
    pets, cts = ranked_pet(index, rules), ranked_ct(index, rules)
    if len(index.studies()) > 1:
        log.warning("%d studies in %s: the best PET decides which one is used", len(index.studies()), index.root)
    for pet in pets:
        for ct in cts:
            if _same_frame(ct, pet):
                log.info("selected CT %s and PET %s", ct.label, pet.label)
                return Selection(ct=ct, pet=pet)
    where = "; ".join(f"{s.label}: study {s.study_uid}, frame of reference {s.frame_of_reference_uid or 'missing'}" for s in [*cts, *pets])
    raise InputError(f"the CT and PET series do not share a study and frame of reference ({where}); they cannot be overlaid "
                     "without registration: give the CT and PET of one PET/CT study")


def select_ct(index: DicomIndex, rules: dict[str, Any] | None = None) -> SeriesEntry:
    """The CT of :func:`select_ct_pet` when the folder has a usable PET/CT pair, else the best CT."""
    rules = rules or load_rules()
    cts = ranked_ct(index, rules)
    try:
        return select_ct_pet(index, rules).ct
    except InputError:
        return cts[0]


def select_pet(index: DicomIndex, rules: dict[str, Any] | None = None) -> SeriesEntry:
    """The best PET series (for SUV of a PET series folder)."""
    return ranked_pet(index, rules)[0]
