"""The station label map as a DICOM Segmentation (BINARY by default, LABELMAP on request).

One segment per station present in the label map, numbered 1..n in station-table order (DICOM
wants segment numbers to start at 1 and rise by 1, so absent stations leave no gaps). Each
segment is coded as clinical-rules.md section 5 asks: category Anatomical Structure, type the
station's CID 7600 concept from `atlas/stations.json`, laterality (Right / Left) as a type
modifier nested inside the type code item; the IASLC station goes into SegmentLabel and
TrackingIdentifier (with a TrackingUID that the SR reuses).

The label map is handed to highdicom as a ``highdicom.Volume`` carrying the CT grid's affine, so
frames are matched to CT images by position, not by list order: the CT files may come in any
order, and a gantry-tilt-corrected grid is stored with its own plane positions. Frames without
any station are omitted (``omit_empty_frames``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from nstage import __version__
from nstage.geometry import Grid
from nstage.outputs.dicom.series import OutputSeries, coded, output_config
from nstage.stations import Station, load_stations, present_labels

SEG_TYPES = ("BINARY", "LABELMAP")


@dataclass(frozen=True)
class SegmentPlan:
    """Which station each segment number stands for (segment_number -> station)."""

    stations: tuple[Station, ...]  # index i = segment number i + 1

    def number_of(self, station: str) -> int | None:
        for i, s in enumerate(self.stations):
            if s.station == station:
                return i + 1
        return None

    def lookup(self) -> np.ndarray:
        """uint8 table mapping an atlas label value to its segment number (0: none)."""
        table = np.zeros(256, dtype=np.uint8)
        for i, s in enumerate(self.stations):
            table[s.label] = i + 1
        return table


def plan_segments(labels: np.ndarray, stations: Sequence[Station] | None = None) -> SegmentPlan:
    """Segments for the stations whose label occurs in ``labels`` (ValueError for unknown labels)."""
    table = tuple(stations) if stations is not None else load_stations()
    known = {s.label for s in table}
    present = set(present_labels(labels))
    unknown = sorted(present - known)
    if unknown:
        raise ValueError(f"station label map holds label(s) {unknown} that atlas/stations.json does not define")
    return SegmentPlan(tuple(s for s in table if s.label in present))


def grid_volume(array: np.ndarray, grid: Grid, frame_of_reference_uid: str) -> hd.Volume:
    """``array`` ([k, j, i] on ``grid``) as a highdicom Volume in LPS (axes: slice, row, column)."""
    affine = np.eye(4)
    scaled = grid.direction * np.asarray(grid.spacing)[None, :]  # columns: i, j, k
    affine[:3, :3] = scaled[:, ::-1]  # highdicom's axis order is (k, j, i)
    affine[:3, 3] = grid.origin
    return hd.Volume(array, affine, coordinate_system="PATIENT", frame_of_reference_uid=frame_of_reference_uid)


def segment_description(number: int, station: Station, tracking_uid: str) -> hd.seg.SegmentDescription:
    """Coded description of one station segment, laterality nested in the type code item."""
    cfg = output_config()
    algo = cfg["seg"]["algorithm"]
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=cfg["seg"]["segment_label_format"].format(station=station.station, name=station.name)[:64],
        segmented_property_category=coded(cfg["seg"]["segment_category"]),
        segmented_property_type=hd.sr.CodedConcept(station.code.value, station.code.scheme, station.code.meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name=algo["name"], family=coded(algo["family"]), version=__version__),
        tracking_uid=tracking_uid,
        tracking_id=cfg["seg"]["tracking_id_format"].format(station=station.station),
    )
    side = cfg["laterality"].get(station.side)
    if side is not None:  # highdicom has no argument for the modifier: add it to the type code item
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [coded(side)]
    return desc


def build_segmentation(ct_headers: Sequence[Dataset], labels: np.ndarray, grid: Grid, series: OutputSeries,
                       tracking_uids: Mapping[str, str], seg_type: str = "BINARY") -> tuple[hd.seg.Segmentation, SegmentPlan]:
    """The SEG of the station label map ``labels`` (uint8, [k, j, i] on the CT ``grid``)."""
    seg_type = seg_type.upper()
    if seg_type not in SEG_TYPES:
        raise ValueError(f"segmentation type {seg_type!r} is not supported (use {' or '.join(SEG_TYPES)})")
    if tuple(labels.shape) != tuple(grid.shape):
        raise ValueError(f"station label map shape {labels.shape} does not match the CT grid {grid.shape}")
    plan = plan_segments(labels)
    if not plan.stations:
        raise ValueError("the station label map is empty: there is no segment to write")
    segment_numbers = plan.lookup()[labels]
    descriptions = [segment_description(i + 1, s, tracking_uids[s.station]) for i, s in enumerate(plan.stations)]
    cfg = output_config()["seg"]
    seg = hd.seg.Segmentation(
        source_images=list(ct_headers),
        pixel_array=grid_volume(segment_numbers, grid, ct_headers[0].FrameOfReferenceUID),
        segmentation_type=seg_type,
        segment_descriptions=descriptions,
        content_label=cfg["content_label"],
        content_description=cfg["content_description"],
        omit_empty_frames=True,
        **series.highdicom_kwargs(),
    )
    return seg, plan
