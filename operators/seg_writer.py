"""SEG writer: the station label map as a DICOM Segmentation (highdicom), referencing the CT."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.outputs.folder import build_seg
from nstage.progress import StageTimer


class StationSegOperator(Operator):
    """Build the DICOM SEG of the mapped stations (one segment per station, coded as in atlas/stations.json).

    Named input:
        analysis: nstage.pipeline.Analysis.

    Named output:
        seg: nstage.outputs.dicom.SegObject (the SEG dataset, its series and the CT headers it
            references), in memory; SaveOutputsOperator writes it.
    """

    IN_ANALYSIS = "analysis"
    OUT_SEG = "seg"

    def __init__(self, fragment: Fragment, *args, timer: StageTimer, seg_type: str = "BINARY", **kwargs) -> None:
        self.timer = timer
        self.seg_type = seg_type  # "BINARY" or "LABELMAP" (newer SOP class; see architecture.md for viewer support)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_ANALYSIS)
        spec.output(self.OUT_SEG)

    def compute(self, op_input, op_output, context) -> None:
        analysis = op_input.receive(self.IN_ANALYSIS)
        with self.timer.stage("SEG"):
            seg = build_seg(analysis, self.seg_type)
        op_output.emit(seg, self.OUT_SEG)
