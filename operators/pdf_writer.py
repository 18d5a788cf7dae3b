"""PDF writer: the one-page report (PDF and PNG) and its DICOM Encapsulated PDF."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.outputs.folder import build_report
from nstage.progress import StageTimer


class ReportPdfOperator(Operator):
    """Render the report page and wrap the PDF as a DICOM Encapsulated PDF instance (in the study of
    the CT, referencing the SEG and the SR).

    Named inputs:
        analysis: nstage.pipeline.Analysis.
        seg: nstage.outputs.dicom.SegObject.
        sr: tuple (pydicom.Dataset of the SR, its OutputSeries).

    Named output:
        report: nstage.outputs.folder.ReportObject (PDF and PNG bytes, the Encapsulated PDF dataset and its
            series), in memory; SaveOutputsOperator writes it.
    """

    IN_ANALYSIS = "analysis"
    IN_SEG = "seg"
    IN_SR = "sr"
    OUT_REPORT = "report"

    def __init__(self, fragment: Fragment, *args, timer: StageTimer, **kwargs) -> None:
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        for name in (self.IN_ANALYSIS, self.IN_SEG, self.IN_SR):
            spec.input(name)
        spec.output(self.OUT_REPORT)

    def compute(self, op_input, op_output, context) -> None:
        analysis = op_input.receive(self.IN_ANALYSIS)
        seg = op_input.receive(self.IN_SEG)
        sr_dataset, _ = op_input.receive(self.IN_SR)
        with self.timer.stage("report"):
            report = build_report(analysis, seg, sr_dataset)
        op_output.emit(report, self.OUT_REPORT)
