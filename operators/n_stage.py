"""N rules: tumour side, TNM8 / TNM9 N category with reasons, the SUV baselines, and result.json's content."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.analysis.findings import Analysis
from nstage.pipeline import (
    RunOptions,
    apply_rules,
    check_options,
    result_document,
    tumour_side,
)
from nstage.progress import StageTimer


class NStageOperator(Operator):
    """Find the tumour side, apply the station-to-N rule set and assemble the analysis.

    The rule set and a user-given side are checked when the operator is made (before any work).

    Named inputs:
        study: nstage.ingest.study.Study.
        findings: nstage.pipeline.StationFindings.
        calls: dict[str, StationCall] from the classifier.
        model: dict describing the classifier.

    Named output:
        analysis: nstage.pipeline.Analysis (study, findings, staging and result.json's content
            without timings): what every writer works from.
    """

    IN_STUDY = "study"
    IN_FINDINGS = "findings"
    IN_CALLS = "calls"
    IN_MODEL = "model"
    OUT_ANALYSIS = "analysis"

    def __init__(self, fragment: Fragment, *args, options: RunOptions, timer: StageTimer, **kwargs) -> None:
        self.side_given = check_options(options)
        self.rules = options.rules
        self.timer = timer
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        for name in (self.IN_STUDY, self.IN_FINDINGS, self.IN_CALLS, self.IN_MODEL):
            spec.input(name)
        spec.output(self.OUT_ANALYSIS)

    def compute(self, op_input, op_output, context) -> None:
        study = op_input.receive(self.IN_STUDY)
        findings = op_input.receive(self.IN_FINDINGS)
        calls = op_input.receive(self.IN_CALLS)
        model = op_input.receive(self.IN_MODEL)
        side = tumour_side(study, findings, self.side_given, self.timer)
        staging = apply_rules(findings, side, calls, self.rules, self.timer)
        op_output.emit(Analysis(study, findings, staging, result_document(study, findings, staging, model)), self.OUT_ANALYSIS)
