"""The outputs of one analysed study: station SEG, TID 1500 SR, the report (Encapsulated PDF, PDF, PNG),
result.json and the station map, written together so that the output folder never holds a partial result.

The build steps are separate so that the MONAI Deploy graph can run one operator per object;
:func:`save_outputs` writes everything through one staging folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from nstage.analysis.findings import Analysis
from nstage.atomic_output import staged_output
from nstage.geometry import save_nifti
from nstage.outputs.dicom import (
    SegObject,
    build_pdf_object,
    build_seg_object,
    build_sr_object,
    output_file_names,
    save_objects,
)
from nstage.outputs.dicom.series import OutputSeries
from nstage.outputs.report import ReportFiles, header_from_dataset, render_report

RESULT = "result.json"
STATION_MAP = "stations.nii.gz"
REPORT_PDF = "report.pdf"
REPORT_PNG = "report.png"


@dataclass(frozen=True)
class ReportObject:
    """The rendered page and its DICOM Encapsulated PDF."""

    files: ReportFiles
    dataset: Dataset
    series: OutputSeries


def output_names() -> tuple[str, ...]:
    """Every file name a run may leave in the output folder (earlier runs' files of these names are replaced)."""
    return (RESULT, STATION_MAP, REPORT_PDF, REPORT_PNG, *output_file_names())


def build_seg(analysis: Analysis, seg_type: str = "BINARY") -> SegObject:
    """The station SEG on the CT grid."""
    study = analysis.study
    return build_seg_object(study.ct.files, study.pet.files, analysis.findings.labels, seg_type, study.ct.grid)


def build_sr(analysis: Analysis, seg: SegObject) -> tuple[Dataset, OutputSeries]:
    """The TID 1500 SR of the findings and the N stage."""
    return build_sr_object(seg, analysis.result)


def build_report(analysis: Analysis, seg: SegObject, sr: Dataset) -> ReportObject:
    """The one-page report (PDF, PNG) and its Encapsulated PDF."""
    study = analysis.study
    files = render_report(header_from_dataset(seg.ct_headers[0]), analysis.result, study.ct.array, study.ct.grid,
                          study.pet.array, study.pet.grid, analysis.findings.labels)
    dataset, series = build_pdf_object(seg, sr, files.pdf)
    return ReportObject(files, dataset, series)


def save_outputs(out_dir: Path, analysis: Analysis, timings: Mapping[str, float], seg: SegObject,
                 sr: tuple[Dataset, OutputSeries], report: ReportObject) -> list[Path]:
    """Write every output into `out_dir` through one staging folder; return the final paths."""
    out_dir = Path(out_dir)
    with staged_output(out_dir, stale=output_names()) as staging:
        save_nifti(analysis.findings.labels.astype(np.uint8), analysis.study.ct.grid, staging / STATION_MAP)
        save_objects([(seg.dataset, seg.series), sr, (report.dataset, report.series)], staging)
        (staging / REPORT_PDF).write_bytes(report.files.pdf)
        (staging / REPORT_PNG).write_bytes(report.files.png)
        result = dict(analysis.result, timings_s={k: round(v, 3) for k, v in timings.items()})
        (staging / RESULT).write_text(json.dumps(result, indent=1))
        names = sorted(p.name for p in staging.iterdir())
    return [out_dir / n for n in names]
