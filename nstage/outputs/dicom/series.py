"""What every output object shares: a new series in the source study, the equipment, the codes.

`config/dicom_output.json` is the one place for series numbers, descriptions, file names and the
coded concepts; this module reads it and turns its code entries into highdicom ``CodedConcept``
values. UIDs are new (highdicom's UID root, random suffix); content and series date/time are the
time of writing, one value for all objects written together. Patient and study attributes are
copied from a source CT header by highdicom (``SOPClass.copy_patient_and_study_information``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import highdicom as hd

from nstage import __version__
from nstage.paths import config_dir

OUTPUT_KINDS = ("seg", "sr", "pdf")


@lru_cache(maxsize=1)
def output_config() -> dict[str, Any]:
    """`config/dicom_output.json`, parsed once per process."""
    return json.loads((config_dir() / "dicom_output.json").read_text(encoding="utf-8"))


def coded(entry: dict[str, str]) -> hd.sr.CodedConcept:
    """A config code entry ``{"value", "scheme", "meaning"}`` as a highdicom coded concept."""
    return hd.sr.CodedConcept(value=str(entry["value"]), scheme_designator=str(entry["scheme"]), meaning=str(entry["meaning"]))


def new_uid() -> str:
    """A new, globally unique DICOM UID."""
    return str(hd.UID())


@dataclass(frozen=True)
class OutputSeries:
    """Identity of one output object: a one-instance series of its own in the source study."""

    kind: str  # "seg" | "sr" | "pdf"
    series_uid: str
    sop_uid: str
    number: int
    description: str
    file_name: str
    written_at: datetime

    def highdicom_kwargs(self) -> dict[str, Any]:
        """Series, instance, equipment and date/time arguments shared by highdicom SOP classes."""
        eq = output_config()["equipment"]
        return {
            "series_instance_uid": self.series_uid,
            "series_number": self.number,
            "sop_instance_uid": self.sop_uid,
            "instance_number": 1,
            "manufacturer": eq["manufacturer"],
            "manufacturer_model_name": eq["manufacturer_model_name"],
            "software_versions": __version__,
            "device_serial_number": eq["device_serial_number"],
            "series_description": self.description,
            "series_date": self.written_at.date(),
            "series_time": self.written_at.time(),
            "content_date": self.written_at.date(),
            "content_time": self.written_at.time(),
        }


def new_series(kind: str, written_at: datetime) -> OutputSeries:
    """Fresh UIDs plus the configured number, description and file name of an output kind."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r} (use one of {', '.join(OUTPUT_KINDS)})")
    spec = output_config()["series"][kind]
    return OutputSeries(kind, new_uid(), new_uid(), int(spec["number"]), str(spec["description"]), str(spec["file"]), written_at)
