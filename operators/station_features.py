"""Station features: per-station SUVmax / SUVmean / SUVpeak / volume and the blood-pool SUV."""

from __future__ import annotations

import logging

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.blood_pool import measure_blood_pool
from nstage.measure import station_uptake
from nstage.pipeline import StationFindings
from nstage.progress import StageTimer
from nstage.registration import StationResult
from nstage.stations import load_stations
from nstage.study import Study

log = logging.getLogger("nstage")


def measure_stations(study: Study, reg: StationResult, timer: StageTimer) -> StationFindings:
    """The measurement half of :func:`nstage.pipeline.find_stations` (same stage name, same values)."""
    names = {s.label: s.station for s in load_stations()}
    with timer.stage("station measurements"):
        by_label = station_uptake(study.pet.array, study.pet.grid, reg.labels, study.ct.grid)
        uptake = {names[k]: v for k, v in sorted(by_label.items())}
        pool = measure_blood_pool(reg.regions.get("blood_pool"), study.ct.array, study.ct.grid, study.pet.array, study.pet.grid)
    if not pool.available:
        log.warning("blood pool not measured: %s", pool.reason)
    return StationFindings(reg, reg.labels, uptake, pool)


class StationFeaturesOperator(Operator):
    """Measure the PET uptake in every mapped station and in the blood pool.

    Named inputs:
        study: nstage.study.Study.
        registration: nstage.registration.StationResult.

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
