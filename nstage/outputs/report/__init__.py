"""The one-page radiologist report: N stage, station table, PET MIP and fusion slices (PDF + PNG).

Entry point: :func:`render_report`. The caller takes the header from the study's DICOM
(:func:`header_from_dataset`) and passes result.json's dict with the CT, SUV and station arrays.
"""

from nstage.outputs.report.page import (
    ReportFiles,
    ReportHeader,
    build_figure,
    header_from_dataset,
    model_notice,
    registration_caveat,
    render_report,
)
from nstage.outputs.report.style import ReportConfigError, ReportStyle, load_style

__all__ = [
    "ReportConfigError",
    "ReportFiles",
    "ReportHeader",
    "ReportStyle",
    "build_figure",
    "header_from_dataset",
    "load_style",
    "model_notice",
    "registration_caveat",
    "render_report",
]
