"""Station features: per-station SUVmax / SUVmean / SUVpeak / volume and the blood-pool SUV."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.pipeline import measure_stations
from nstage.progress import StageTimer


class StationFeaturesOperator(Operator):
    """Measure the PET uptake in every mapped station and in the blood pool.

    Named inputs:
        study: nstage.ingest.study.Study.
        registration: nstage.stationmap.registration.StationResult.

    Named output:
        findings: nstage.pipeline.StationFindings (labels, per-station uptake, blood pool).
    """

    IN_STUDY = "study"
    IN_REGISTRATION = "registration"
    OUT_FINDINGS = "findings"

    def __init__(self, fragment: Fragment, *args, timer: StageTimer, **kwargs) -> None:
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_STUDY)
        spec.input(self.IN_REGISTRATION)
        spec.output(self.OUT_FINDINGS)

    def compute(self, op_input, op_output, context) -> None:
        study = op_input.receive(self.IN_STUDY)
        reg = op_input.receive(self.IN_REGISTRATION)
        op_output.emit(measure_stations(study, reg, self.timer), self.OUT_FINDINGS)
