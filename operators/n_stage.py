"""N rules: tumour side, TNM8 / TNM9 N category with reasons, the SUV baselines, and result.json's content."""

from __future__ import annotations

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.baselines import blood_pool_baseline, suvmax_baseline
from nstage.nrules import stage
from nstage.pipeline import Analysis, RunOptions, StationFindings, Staging, check_options, result_document
from nstage.progress import StageTimer
from nstage.station_classifier import StationCall
from nstage.study import Study
from nstage.tumour_side import TumourSide, find_tumour_side


def stage_study(study: Study, findings: StationFindings, calls: dict[str, StationCall], rules: str, side_given: str | None,
                timer: StageTimer) -> Staging:
    """The side, rules and baseline steps of :func:`nstage.pipeline.decide` (same stage names, same decisions)."""
    pool = findings.blood_pool.suv_mean
    with timer.stage("tumour side"):
        if side_given:
            side = TumourSide(side_given, "user", reasons=("given by the user (--tumour-side)",))
        else:
            side = find_tumour_side(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, findings.labels, pool)
    with timer.stage("N rules"):
        n = stage([s for s, c in calls.items() if c.malignant], side.side, rules)
        baselines = [suvmax_baseline(findings.uptake, side.side, rules)]
        if pool is not None:
            baselines.append(blood_pool_baseline(findings.uptake, pool, side.side, rules))
    return Staging(side, calls, n, tuple(baselines), rules)


class NStageOperator(Operator):
    """Find the tumour side, apply the station-to-N rule set and assemble the analysis.

    The rule set and a user-given side are checked when the operator is made (before any work).

    Named inputs:
        study: nstage.study.Study.
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
        staging = stage_study(study, findings, calls, self.rules, self.side_given, self.timer)
        op_output.emit(Analysis(study, findings, staging, result_document(study, findings, staging, model)), self.OUT_ANALYSIS)
