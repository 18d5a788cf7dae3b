"""SR writer: the findings as a DICOM Comprehensive 3D SR following TID 1500 (highdicom)."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.outputs.folder import build_sr
from nstage.progress import StageTimer


class FindingsSrOperator(Operator):
    """Build the TID 1500 measurement report: per-station SUV measurements and calls referencing the
    SEG's segments, the tumour side and the N category.

    Named inputs:
        analysis: nstage.pipeline.Analysis.
        seg: nstage.outputs.dicom.SegObject, the SEG the report's measurements refer to.

    Named output:
        sr: tuple (pydicom.Dataset of the SR, its nstage.outputs.dicom.series.OutputSeries), in memory;
            SaveOutputsOperator writes it.
    """

    IN_ANALYSIS = "analysis"
    IN_SEG = "seg"
    OUT_SR = "sr"

    def __init__(self, fragment: Fragment, *args, timer: StageTimer, **kwargs) -> None:
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_ANALYSIS)
        spec.input(self.IN_SEG)
        spec.output(self.OUT_SR)

    def compute(self, op_input, op_output, context) -> None:
        analysis = op_input.receive(self.IN_ANALYSIS)
        seg = op_input.receive(self.IN_SEG)
        with self.timer.stage("SR"):
            sr = build_sr(analysis, seg)
        op_output.emit(sr, self.OUT_SR)
