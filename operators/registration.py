"""Atlas registration: the atlas CT(s) registered to the patient CT, station labels carried over."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.pipeline import RunOptions, load_default_atlases, register_atlas
from nstage.progress import StageTimer


class AtlasRegistrationOperator(Operator):
    """Register the atlas(es) to the CT (Elastix, or the PyTorch backend: `options.registration`,
    NSTAGE_REGISTRATION for the app) and map the stations onto the CT grid.

    The atlases are loaded once, when the operator is made.

    Named input:
        study: nstage.ingest.study.Study.

    Named output:
        registration: nstage.stationmap.registration.StationResult (station labels on the CT grid, quality grade,
            regions such as the blood pool).
    """

    IN_STUDY = "study"
    OUT_REGISTRATION = "registration"

    def __init__(self, fragment: Fragment, *args, options: RunOptions, timer: StageTimer, **kwargs) -> None:
        self.atlases = load_default_atlases(options)
        self.backend = options.registration
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_STUDY)
        spec.output(self.OUT_REGISTRATION)

    def compute(self, op_input, op_output, context) -> None:
        study = op_input.receive(self.IN_STUDY)
        op_output.emit(register_atlas(study, self.atlases, self.timer, self.backend), self.OUT_REGISTRATION)
