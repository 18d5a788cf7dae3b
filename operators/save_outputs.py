"""Save every output of one study into the output folder at once (never a partial result)."""

from __future__ import annotations

import logging
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.outputs.folder import save_outputs
from nstage.progress import StageTimer

log = logging.getLogger("nstage")


class SaveOutputsOperator(Operator):
    """Write the SEG, SR and Encapsulated PDF (``*.dcm``), report.pdf / .png, result.json (with the
    stage timings) and stations.nii.gz through a staging folder moved into place at the end.

    Named inputs:
        analysis: nstage.pipeline.Analysis.
        seg: nstage.outputs.dicom.SegObject (DICOM SEG).
        sr: tuple (pydicom.Dataset of the DICOM SR, TID 1500; its OutputSeries).
        report: nstage.outputs.folder.ReportObject (PDF, PNG, Encapsulated PDF).

    No output port: the files in ``output_folder`` are the app's result.
    """

    IN_ANALYSIS = "analysis"
    IN_SEG = "seg"
    IN_SR = "sr"
    IN_REPORT = "report"

    def __init__(self, fragment: Fragment, *args, output_folder: Path, timer: StageTimer, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        self.timer = timer
        self.written: list[Path] = []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        for name in (self.IN_ANALYSIS, self.IN_SEG, self.IN_SR, self.IN_REPORT):
            spec.input(name)

    def compute(self, op_input, op_output, context) -> None:
        analysis = op_input.receive(self.IN_ANALYSIS)
        seg = op_input.receive(self.IN_SEG)
        sr = op_input.receive(self.IN_SR)
        report = op_input.receive(self.IN_REPORT)
        with self.timer.stage("write outputs"):
            self.written = save_outputs(self.output_folder, analysis, dict(self.timer.timings), seg, sr, report)
        n = analysis.result["n_stage"]
        log.info("N stage %s (TNM 8), %s (TNM 9); %d files written to %s", n["tnm8"], n["tnm9"], len(self.written), self.output_folder)
