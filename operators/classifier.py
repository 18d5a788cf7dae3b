"""Station classifier: the PET/CT CNN of the models folder (GPU when there is one), else the SUVmax slot."""

from __future__ import annotations

from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.analysis.classifier.slot import load_classifier
from nstage.pipeline import RunOptions, check_options, classify_stations, tumour_side
from nstage.progress import StageTimer


class StationClassifierOperator(Operator):
    """Call every station malignant or benign, with a probability.

    The classifier is loaded once, when the operator is made, from the app's models folder
    (MODELS/station_cnn/model.ts: the SDK's multi-model layout, sub-folder name = model name);
    without a model the SUVmax slot stands in and result.json's ``model`` says so. The tumour
    side (given in the options, else found on the images) tells the network each station's N category.

    Named inputs:
        study: nstage.ingest.study.Study.
        findings: nstage.pipeline.StationFindings.

    Named outputs:
        calls: dict[str, nstage.analysis.classifier.slot.StationCall], keyed by station name.
        model: dict describing the classifier (result.json ``model``).
    """

    IN_STUDY = "study"
    IN_FINDINGS = "findings"
    OUT_CALLS = "calls"
    OUT_MODEL = "model"

    def __init__(self, fragment: Fragment, *args, models_dir: Path, options: RunOptions, timer: StageTimer, **kwargs) -> None:
        self.classifier = load_classifier(Path(models_dir))
        self.side_given = check_options(options)
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_STUDY)
        spec.input(self.IN_FINDINGS)
        spec.output(self.OUT_CALLS)
        spec.output(self.OUT_MODEL)

    def compute(self, op_input, op_output, context) -> None:
        study = op_input.receive(self.IN_STUDY)
        findings = op_input.receive(self.IN_FINDINGS)
        side = tumour_side(study, findings, self.side_given).side  # the classifier reads stations relative to the tumour
        op_output.emit(classify_stations(study, findings, self.classifier, side, self.timer), self.OUT_CALLS)
        op_output.emit(dict(self.classifier.description), self.OUT_MODEL)
