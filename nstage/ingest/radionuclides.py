"""PET radionuclides: half-lives, and how to recognise one from RadionuclideCodeSequence.

Used when a PET header lacks RadionuclideHalfLife (0018,1075) (SUV manual, "Radiopharmaceutical
half-life"). Half-lives in seconds are the evaluated nuclear data values (NNDC / DDEP); codes are
SNOMED CT with the legacy SNOMED RT (SRT) equivalents that older scanners write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

from nstage.ingest.dicom_values import text


@dataclass(frozen=True)
class Radionuclide:
    symbol: str  # "F-18"
    element: str  # "Fluorine"
    mass: int
    half_life_s: float
    codes: tuple[str, ...]  # SCT and SRT code values


NUCLIDES: tuple[Radionuclide, ...] = (
    Radionuclide("F-18", "Fluorine", 18, 6586.2, ("77004003", "C-111A1")),  # 109.77 min
    Radionuclide("Ga-68", "Gallium", 68, 4062.6, ("35337001", "C-131A3")),  # 67.71 min
    Radionuclide("C-11", "Carbon", 11, 1221.8, ("40565003", "C-105A1")),  # 20.364 min
    Radionuclide("N-13", "Nitrogen", 13, 597.9, ("21576001", "C-107A1")),  # 9.965 min
    Radionuclide("O-15", "Oxygen", 15, 122.24, ("129504001", "C-B1038")),
    Radionuclide("Rb-82", "Rubidium", 82, 75.45, ("79197006", "C-159A2")),  # 1.2575 min
    Radionuclide("Cu-64", "Copper", 64, 45723.6, ("3932008", "C-127A2")),  # 12.701 h
    Radionuclide("Cu-62", "Copper", 62, 580.2, ("422934004", "C-127A5")),  # 9.67 min
    Radionuclide("Zr-89", "Zirconium", 89, 282276.0, ("63360001", "C-168A4")),  # 78.41 h
    Radionuclide("I-124", "Iodine", 124, 360806.0, ("40937006", "C-114A5")),  # 4.176 d
    Radionuclide("Y-86", "Yttrium", 86, 53064.0, ("10738001", "C-162A3")),  # 14.74 h
    Radionuclide("Ge-68", "Germanium", 68, 23408352.0, ("53315004", "C-128A2")),  # 270.93 d
)

_SYMBOL = {n.element.upper(): n.symbol.split("-")[0].upper() for n in NUCLIDES}


def _from_meaning(meaning: str) -> Radionuclide | None:
    """Match "^18^Fluorine", "Fluorine-18", "18F", "F-18", "F18" (case-insensitive)."""
    m = meaning.upper().replace("^", " ")
    for n in NUCLIDES:
        elem, sym, mass = n.element.upper(), _SYMBOL[n.element.upper()], n.mass
        patterns = (rf"\b{mass}\s*-?\s*{elem}\b", rf"\b{elem}\s*-?\s*{mass}\b", rf"\b{mass}\s*-?\s*{sym}\b", rf"\b{sym}\s*-?\s*{mass}\b")
        if any(re.search(p, m) for p in patterns):
            return n
    return None


def identify(item: Dataset) -> Radionuclide | None:
    """The radionuclide named by ``item.RadionuclideCodeSequence`` (code value, then meaning)."""
    seq = item.get("RadionuclideCodeSequence") if isinstance(item, Dataset) else None
    if not seq:
        return None
    code = seq[0]
    value = (text(code, "CodeValue") or "").upper()
    for n in NUCLIDES:
        if value in n.codes:
            return n
    meaning = text(code, "CodeMeaning")
    return _from_meaning(meaning) if meaning else None
