"""A reviewed station map stored as DICOM SEG, read back onto the CT's grid with its segments named by station.

A reviewer corrects the station map in a viewer and stores it as a SEG that references the CT
series: OHIF's "Export DICOM SEG" (dcmjs), MONAI Label's label upload (dcmqi), or the app's own
SEG opened, edited and stored again. Its segments keep the names they were given: the station
("4R"), or the SegmentLabel the app's SEG writer gives a station (`config/dicom_output.json`
seg.segment_label_format, e.g. "4R Lower paratracheal"). Segments are matched to stations by that
name, never by number, so a viewer may renumber, reorder or drop them.

`check_head_to_feet` refuses a reviewed map whose slices came back in reverse order (the lower
mediastinal stations above the upper ones), as OHIF's "Download DICOM SEG" in monailabel 0.8.5's
build writes them for a CT whose instance numbers rise from feet to head (docs/monai-label.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.outputs.dicom.series import output_config
from nstage.stations import load_stations, present_labels


def station_of_segment(label: str) -> str | None:
    """The station a segment label names (the station itself, or the SEG writer's label of it); None if none."""
    text = " ".join(str(label).split())
    fmt = output_config()["seg"]["segment_label_format"]
    for s in load_stations():
        if text == s.station or text == " ".join(fmt.format(station=s.station, name=s.name)[:64].split()):
            return s.station
    return None


def read_station_seg(seg_file: str | Path, ct_files: Sequence[str | Path], grid: Grid) -> tuple[np.ndarray, dict[int, str]]:
    """The segments of ``seg_file`` on the CT ``grid`` (its instances ``ct_files`` in slice order).

    Returns the map (uint16 ``[k, j, i]``, value = segment number) and segment number -> station
    for the segments that hold voxels. A segment whose label names no station, two segments of one
    station, or overlapping segments are refused (InputError).
    """
    name = Path(seg_file).name
    seg = hd.seg.segread(str(seg_file))
    ct = [pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "ImagePositionPatient", "FrameOfReferenceUID"])
          for f in ct_files]
    if len(ct) != grid.shape[0]:
        raise ValueError(f"{len(ct)} CT files for a grid of {grid.shape[0]} slices")
    _check_frames_on_ct(seg, ct, name)
    try:  # frames are placed by the CT instance they reference; positions checked above (dcmjs does not say they are kept)
        pixels = seg.get_pixels_by_source_instance([str(h.SOPInstanceUID) for h in ct], combine_segments=True, relabel=False,
                                                   ignore_spatial_locations=True, assert_missing_frames_are_empty=True, dtype=np.uint16)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(f"the SEG {name} cannot be placed on the CT series it references: {exc}") from None
    labels = np.asarray(pixels, dtype=np.uint16)
    if labels.shape != tuple(grid.shape):
        raise InputError(f"the SEG {Path(seg_file).name} has frames of {labels.shape[1:]} pixels; the CT has {grid.shape[1:]}")
    present = set(present_labels(labels))
    table: dict[int, str] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        if number not in present:
            continue
        station = station_of_segment(item.SegmentLabel)
        if station is None:
            raise InputError(f"segment {number} {item.SegmentLabel!r} of the SEG names no station of atlas/stations.json; "
                             "name segments by station (e.g. 4R)")
        if station in table.values():
            raise InputError(f"the SEG has two segments of station {station}")
        table[number] = station
    if not table:
        raise InputError(f"the SEG {name} holds no station segment with voxels")
    return labels, table


UPPER_ZONES = ("supraclavicular", "upper")
LOWER_ZONES = ("subcarinal", "lower")


def check_head_to_feet(labels: np.ndarray, grid: Grid, names: Mapping[int, str], what: str) -> None:
    """InputError when the stations of the upper zones (1, 2, 3, 4) lie below those of the lower zones (7, 8, 9).

    ``labels`` [k, j, i] on ``grid``, ``names`` value -> station. Skipped when either group is absent.
    """
    zone = {s.station: s.zone for s in load_stations()}
    heights: dict[str, list[float]] = {"upper": [], "lower": []}
    array = np.asarray(labels)
    for value, station in names.items():
        group = "upper" if zone.get(station) in UPPER_ZONES else "lower" if zone.get(station) in LOWER_ZONES else None
        kji = np.argwhere(array == int(value)) if group else np.empty((0, 3))
        if kji.size:
            centre = grid.index_to_lps(kji.mean(axis=0)[::-1])  # (i, j, k) -> LPS
            heights[group].append(float(centre[2]))  # LPS z: towards the head
    if heights["upper"] and heights["lower"] and np.mean(heights["upper"]) < np.mean(heights["lower"]):
        raise InputError(f"{what}: the lower mediastinal stations (7, 8, 9) lie above the upper ones (1-4): its slices are in "
                         "reverse order (OHIF's Download DICOM SEG does this to a CT numbered from feet to head); "
                         "store the map again from a viewer that keeps the slice order")


def _check_frames_on_ct(seg: hd.seg.Segmentation, ct: Sequence[pydicom.Dataset], name: str, tol_mm: float = 0.01) -> None:
    """Every frame of ``seg`` lies on the CT slice it references (same frame of reference, same position)."""
    if str(seg.FrameOfReferenceUID) != str(ct[0].FrameOfReferenceUID):
        raise InputError(f"the SEG {name} is in another frame of reference than the CT")
    position = {str(h.SOPInstanceUID): np.asarray(h.ImagePositionPatient, dtype=float) for h in ct}
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        try:
            ref = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            at = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        except (AttributeError, IndexError):
            raise InputError(f"frame {i} of the SEG {name} names no CT slice or no position") from None
        if ref not in position:
            raise InputError(f"frame {i} of the SEG {name} references an image that is not a slice of the CT series")
        if np.abs(at - position[ref]).max() > tol_mm:
            raise InputError(f"frame {i} of the SEG {name} lies {np.abs(at - position[ref]).max():.2f} mm off the CT slice it references")
