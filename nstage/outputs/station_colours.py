"""The colour of each station for a viewer: the colour the report draws its outline in.

The report (nstage/outputs/report) outlines a station in the colour of its call, read from
`config/report.json` "colours" (malignant, benign, not_found) by `ReportStyle.call_colour`. A viewer
that shows the station map of the same analysis gets the same colours from here, so the two agree
without a second colour table: the station SEG stored for a viewer carries them as
RecommendedDisplayCIELabValue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import highdicom as hd

from nstage.outputs.dicom import SegObject
from nstage.outputs.report.style import load_style
from nstage.stations import load_stations


def station_colours(result: Mapping[str, Any]) -> dict[str, str]:
    """Station name -> '#rrggbb' of its call in ``result`` (result.json), for every station of the table."""
    style = load_style()
    calls = result.get("stations", {})
    return {s.station: style.call_colour(_malignant(calls.get(s.station))) for s in load_stations()}


def colour_segments(seg: SegObject, colours: Mapping[str, str]) -> None:
    """Set each segment's RecommendedDisplayCIELabValue (0062,000D) of ``seg`` to its station's colour."""
    for item, station in zip(seg.dataset.SegmentSequence, seg.plan.stations, strict=True):
        item.RecommendedDisplayCIELabValue = list(hd.color.CIELabColor.from_string(colours[station.station]).value)


def _malignant(entry: Mapping[str, Any] | None) -> bool | None:
    if entry is None or entry.get("malignant") is None:
        return None
    return bool(entry["malignant"])
