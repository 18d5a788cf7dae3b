"""One entry point that writes the app's DICOM outputs for one analysed study.

``write_dicom_outputs`` writes, each as a one-instance series of the source study:
the SEG of the station label map, the TID 1500 SR of the findings and N stage (evidence: CT,
PET and SEG), and, when PDF bytes are given, the Encapsulated PDF report. Segment tracking UIDs
are shared between the SEG and the SR so that a viewer can pair a finding with its region.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.errors
from pydicom.dataset import Dataset

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.ingest.dicom_index import Instance, SeriesEntry
from nstage.ingest.volumes import stack_series
from nstage.outputs.dicom.pdf import PDF_MAGIC, build_encapsulated_pdf
from nstage.outputs.dicom.seg import SEG_TYPES, SegmentPlan, build_segmentation
from nstage.outputs.dicom.series import OutputSeries, new_series, new_uid, output_config
from nstage.outputs.dicom.sr import build_report
from nstage.stations import load_stations

log = logging.getLogger("nstage.outputs.dicom")


def output_file_names() -> tuple[str, ...]:
    """File names the writer may create in the output folder (SEG, SR, PDF)."""
    series = output_config()["series"]
    return tuple(series[k]["file"] for k in ("seg", "sr", "pdf"))


def read_headers(files: Iterable[str | Path], what: str) -> list[Dataset]:
    """Headers (no pixel data) of one series' files; InputError when there are none or they mix series."""
    headers = []
    for f in dict.fromkeys(Path(f) for f in files):  # the frames of an enhanced object share one file
        try:
            headers.append(pydicom.dcmread(Path(f), stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as e:
            raise InputError(f"{what} file {Path(f).name} cannot be read as DICOM ({e}); give the files of the analysed {what} series") from None
    if not headers:
        raise InputError(f"no {what} files were given to the DICOM writer")
    series = {str(h.SeriesInstanceUID) for h in headers}
    if len(series) != 1:
        raise InputError(f"the {what} files belong to {len(series)} series; give the files of one series")
    return headers


def ct_grid_from_headers(files: list[Path], headers: list[Dataset]) -> Grid:
    """The CT grid as :mod:`nstage.ingest.volumes` builds it from the same files (same checks, same order)."""
    first = headers[0]
    entry = SeriesEntry(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), tuple(Instance(Path(f), h) for f, h in zip(files, headers)))
    return stack_series(entry).grid


@dataclass(frozen=True)
class SegObject:
    """The SEG of one study with what the SR and the PDF need from it."""

    dataset: Dataset
    plan: SegmentPlan
    tracking: dict[str, str]  # station -> tracking UID shared by SEG and SR
    ct_headers: list[Dataset]
    pet_headers: list[Dataset]
    created: datetime
    series: OutputSeries


def build_seg_object(ct_files: Iterable[str | Path], pet_files: Iterable[str | Path], stations: np.ndarray,
                     seg_type: str = "BINARY", ct_grid: Grid | None = None) -> SegObject:
    """The station SEG (BINARY or LABELMAP) of a label map on the CT grid, from the source series' files."""
    if seg_type.upper() not in SEG_TYPES:
        raise ValueError(f"segmentation type {seg_type!r} is not supported (use {' or '.join(SEG_TYPES)})")
    ct_paths, pet_paths = [Path(f) for f in ct_files], [Path(f) for f in pet_files]
    ct = read_headers(ct_paths, "CT")
    pet = read_headers(pet_paths, "PET")
    if ct[0].StudyInstanceUID != pet[0].StudyInstanceUID:
        raise InputError("the CT and PET series given to the DICOM writer belong to different studies")
    grid = ct_grid if ct_grid is not None else ct_grid_from_headers(ct_paths, ct)
    labels = np.asarray(stations)
    if labels.shape != tuple(grid.shape):
        raise InputError(f"station label map shape {labels.shape} does not match the CT grid {grid.shape}")
    now = datetime.now()
    tracking = {s.station: new_uid() for s in load_stations()}
    series = new_series("seg", now)
    seg, plan = build_segmentation(ct, labels.astype(np.uint8, copy=False), grid, series, tracking, seg_type)
    return SegObject(seg, plan, tracking, ct, pet, now, series)


def build_sr_object(seg: SegObject, result: Mapping[str, Any]) -> tuple[Dataset, OutputSeries]:
    """The TID 1500 SR of the findings (evidence: CT, PET and the SEG)."""
    series = new_series("sr", seg.created)
    return build_report(seg.ct_headers, seg.pet_headers, seg.dataset, seg.plan, seg.tracking, result, series), series


def build_pdf_object(seg: SegObject, sr: Dataset, pdf_bytes: bytes) -> tuple[Dataset, OutputSeries]:
    """The Encapsulated PDF report, a new series of the study (sources: SEG and SR)."""
    if not pdf_bytes.startswith(PDF_MAGIC):
        raise ValueError("the report is not a PDF document (it does not start with %PDF-)")
    series = new_series("pdf", seg.created)
    return build_encapsulated_pdf(pdf_bytes, seg.ct_headers[0], series, sources=(seg.dataset, sr)), series


def save_objects(objects: Iterable[tuple[Dataset, OutputSeries]], out_dir: str | Path) -> list[Path]:
    """Write built objects under their series' file names into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ds, series in objects:
        path = out / series.file_name
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    log.info("DICOM outputs: %s", ", ".join(p.name for p in written))
    return written


def write_dicom_outputs(ct_files: Iterable[str | Path], pet_files: Iterable[str | Path], stations: np.ndarray, result: Mapping[str, Any],
                        out_dir: str | Path, pdf_bytes: bytes | None = None, seg_type: str = "BINARY",
                        ct_grid: Grid | None = None) -> list[Path]:
    """Write SEG, SR and (with ``pdf_bytes``) the Encapsulated PDF into ``out_dir``; return their paths.

    ``stations``: uint8 label map ``[k, j, i]`` on the CT grid (labels of atlas/stations.json);
    ``result``: the dict `nstage run` writes as result.json; ``ct_grid``: the CT grid when the
    caller has it (else it is rebuilt from the CT headers). The source study must hold the CT
    and PET series; every object is a new series of that study. Everything is built before the
    first file is written.
    """
    if pdf_bytes is not None and not pdf_bytes.startswith(PDF_MAGIC):
        raise ValueError("the report is not a PDF document (it does not start with %PDF-)")
    seg = build_seg_object(ct_files, pet_files, stations, seg_type, ct_grid)
    sr = build_sr_object(seg, result)
    objects = [(seg.dataset, seg.series), sr]
    if pdf_bytes is not None:
        objects.append(build_pdf_object(seg, sr[0], pdf_bytes))
    return save_objects(objects, out_dir)
