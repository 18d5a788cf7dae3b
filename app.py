"""The MONAI Deploy application: mediastinal lymph-node stations and N stage from one FDG PET/CT study.

    python app.py -i STUDY_DIR -o OUT_DIR -m MODELS_DIR
    HOLOSCAN_INPUT_PATH=STUDY_DIR HOLOSCAN_OUTPUT_PATH=OUT_DIR HOLOSCAN_MODEL_PATH=MODELS_DIR python app.py

OUT_DIR receives the DICOM SEG, the DICOM SR (TID 1500) and the Encapsulated PDF report as ``*.dcm``,
report.pdf / report.png, result.json and stations.nii.gz, all at once at the end (never a partial
result). Bad input ends with one ``error:`` line on stderr and a non-zero exit status, and leaves
OUT_DIR as it was. The decisions are those of ``nstage run`` on the same study: both call the same
nstage functions.

Stack size: Holoscan asks for a 32 MB stack (``ulimit -s 32768``); when the soft limit is lower and
the hard limit allows it, this script raises the soft limit and re-executes itself once, so a
plain ``python app.py`` is enough. In Docker the hard limit is the container's: run it with
``--ulimit stack=33554432`` (the Holoscan runner, ``monai-deploy run``, sets 64 MB itself).
"""

from __future__ import annotations

import os
import resource
import sys

STACK_BYTES = 32 * 1024 * 1024  # Holoscan's recommended minimum
_REEXEC_MARK = "NSTAGE_APP_STACK_RAISED"


def ensure_stack_size() -> None:
    """Re-execute this interpreter once with a 32 MB stack limit when the current one is lower.

    The main thread's stack and glibc's default thread stack are sized from RLIMIT_STACK when a
    process starts, so raising the limit only takes effect in a new process image."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES or os.environ.get(_REEXEC_MARK):
        return
    if hard != resource.RLIM_INFINITY and hard < STACK_BYTES:
        print(f"warning: stack limit {soft // 1024} KB and hard limit {hard // 1024} KB are below Holoscan's 32768 KB; "
              "run with 'ulimit -s 32768' (Docker: --ulimit stack=33554432)", file=sys.stderr)
        return
    resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, hard))
    os.environ[_REEXEC_MARK] = "1"
    os.execv(sys.executable, list(sys.orig_argv))


if __name__ == "__main__":
    ensure_stack_size()  # before the heavy imports below: the re-executed process repeats them

import argparse  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from monai.deploy.conditions import CountCondition  # noqa: E402
from monai.deploy.core import AppContext, Application, RuntimeEnv  # noqa: E402
from monai.deploy.exceptions import ItemNotExistsError  # noqa: E402
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator  # noqa: E402
from monai.deploy.operators.dicom_series_selector_operator import (
    DICOMSeriesSelectorOperator,  # noqa: E402
)

from nstage.errors import InputError  # noqa: E402
from nstage.ingest.series_selection import rules_path  # noqa: E402
from nstage.pipeline import RunOptions, check_options  # noqa: E402
from nstage.progress import StageTimer, quiet_library_loggers  # noqa: E402
from operators import (  # noqa: E402
    AtlasRegistrationOperator,
    FindingsSrOperator,
    NStageOperator,
    ReportPdfOperator,
    SaveOutputsOperator,
    StationClassifierOperator,
    StationFeaturesOperator,
    StationSegOperator,
    StudyVolumesOperator,
)

log = logging.getLogger("nstage.app")


class NStageApp(Application):
    """FDG PET/CT -> lymph-node stations (atlas registration) -> station calls -> TNM8 / TNM9 N stage.

    Graph (operator: named input ports <- upstream output ports):

        dicom_loader        (SDK DICOMDataLoaderOperator)       reads the study folder
        series_selector     (SDK DICOMSeriesSelectorOperator)   dicom_study_list; rules config/series_selection.json
        pet_ct_volumes      dicom_study_list, study_selected_series_list  -> study
        atlas_registration  study                                         -> registration
        station_features    study, registration                           -> findings
        station_classifier  study, findings                               -> calls, model
        n_stage             study, findings, calls, model                 -> analysis
        seg_writer          analysis                                      -> seg
        sr_writer           analysis, seg                                 -> sr
        pdf_writer          analysis, seg, sr                             -> report
        save_outputs        analysis, seg, sr, report                     (writes OUT_DIR atomically)
    """

    def __init__(self, *args, context: AppContext | None = None, options: RunOptions | None = None, **kwargs) -> None:
        self._context = context
        self._options = options or RunOptions()
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        """Make the operators and wire their ports."""
        ctx = self._context or Application.init_app_context(self.argv)
        study_dir, out_dir, models_dir = Path(ctx.input_path), Path(ctx.output_path), Path(ctx.model_path)
        timer = StageTimer()  # stage times for result.json, shared by the operators

        loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=study_dir, name="dicom_loader")
        selector = DICOMSeriesSelectorOperator(self, rules=rules_path().read_text(), all_matched=True, name="series_selector")
        volumes = StudyVolumesOperator(self, input_folder=study_dir, timer=timer, name="pet_ct_volumes")
        registration = AtlasRegistrationOperator(self, options=self._options, timer=timer, name="atlas_registration")
        features = StationFeaturesOperator(self, timer=timer, name="station_features")
        classifier = StationClassifierOperator(self, models_dir=models_dir, options=self._options, timer=timer,
                                               name="station_classifier")
        n_stage = NStageOperator(self, options=self._options, timer=timer, name="n_stage")
        seg = StationSegOperator(self, timer=timer, name="seg_writer")
        sr = FindingsSrOperator(self, timer=timer, name="sr_writer")
        pdf = ReportPdfOperator(self, timer=timer, name="pdf_writer")
        save = SaveOutputsOperator(self, output_folder=out_dir, timer=timer, name="save_outputs")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(loader, volumes, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, volumes, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(volumes, registration, {("study", "study")})
        self.add_flow(volumes, features, {("study", "study")})
        self.add_flow(registration, features, {("registration", "registration")})
        self.add_flow(volumes, classifier, {("study", "study")})
        self.add_flow(features, classifier, {("findings", "findings")})
        self.add_flow(volumes, n_stage, {("study", "study")})
        self.add_flow(features, n_stage, {("findings", "findings")})
        self.add_flow(classifier, n_stage, {("calls", "calls"), ("model", "model")})
        self.add_flow(n_stage, seg, {("analysis", "analysis")})
        self.add_flow(n_stage, sr, {("analysis", "analysis")})
        self.add_flow(seg, sr, {("seg", "seg")})
        self.add_flow(n_stage, pdf, {("analysis", "analysis")})
        self.add_flow(seg, pdf, {("seg", "seg")})
        self.add_flow(sr, pdf, {("sr", "sr")})
        self.add_flow(n_stage, save, {("analysis", "analysis")})
        self.add_flow(seg, save, {("seg", "seg")})
        self.add_flow(sr, save, {("sr", "sr")})
        self.add_flow(pdf, save, {("report", "report")})


@dataclass(frozen=True)
class AppPaths:
    """Input, output and models folders as the SDK resolves them: flags first, then HOLOSCAN_* variables."""

    study: Path
    output: Path
    models: Path

    @classmethod
    def resolve(cls, args: list[str], env: RuntimeEnv | None = None) -> AppPaths:
        """The three folders of a command line; InputError when the study or models folder is missing."""
        env = env or RuntimeEnv()
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--input", "-i", default=env.input)
        p.add_argument("--output", "-o", default=env.output)
        p.add_argument("--model", "-m", default=env.model)
        known, _ = p.parse_known_args(args)
        paths = cls(Path(known.input), Path(known.output), Path(known.model))
        if not paths.study.is_dir():
            raise InputError(f"study folder {paths.study} does not exist (give -i or HOLOSCAN_INPUT_PATH: the folder with the study's CT and PET)")
        if not paths.models.is_dir():
            raise InputError(f"models folder {paths.models} does not exist (give -m or HOLOSCAN_MODEL_PATH with the app's models folder; "
                             "an empty folder runs the SUVmax baseline in the classifier slot)")
        if paths.output.exists() and not paths.output.is_dir():
            raise InputError(f"output {paths.output} exists and is not a folder: give -o a folder")
        return paths


def options_from_env(env: dict[str, str] | None = None) -> RunOptions:
    """The options of `nstage run` that a MAP takes from its environment: NSTAGE_RULES (tnm | paper-2026),
    NSTAGE_TUMOUR_SIDE (R | L; found on the images when unset) and NSTAGE_REGISTRATION (elastix | torch |
    auto: torch on a CUDA GPU, else Elastix; unset: config/registration.json's `backend`); checked before any work."""
    env = dict(os.environ if env is None else env)
    options = RunOptions(rules=env.get("NSTAGE_RULES") or "tnm", tumour_side=env.get("NSTAGE_TUMOUR_SIDE") or None,
                         registration=env.get("NSTAGE_REGISTRATION") or None)
    check_options(options)
    return options


def _error(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the app on one study; 0 on success, 2 on bad input, 1 on any other failure."""
    argv = list(sys.argv if argv is None else argv)
    asks_help = any(a in ("-h", "--help") for a in argv[1:])
    try:
        paths = None if asks_help else AppPaths.resolve(argv[1:])
        options = options_from_env()
    except InputError as e:
        return _error(str(e), 2)
    made_output = paths is not None and not paths.output.exists()
    status = 1
    try:
        context = Application.init_app_context(argv)  # the SDK's parser: -i/-o/-m/-l/-w, HOLOSCAN_* variables
        quiet_library_loggers()  # after the SDK set the log level (-l)
        NStageApp([sys.executable, *argv], context=context, options=options).run()
        status = 0
    except InputError as e:
        status = _error(str(e), 2)
    except ItemNotExistsError:
        status = _error(f"no DICOM files in {paths.study if paths else 'the input folder'}: give the folder that holds the study's CT and PET", 2)
    except KeyboardInterrupt:
        status = _error("interrupted", 130)
    except Exception as e:  # a failure inside an operator is re-raised here by Holoscan
        log.debug("app failed", exc_info=True)
        status = _error(f"the app failed ({type(e).__name__}: {e}); the log above names the operator", 1)
    finally:
        if status != 0 and made_output and paths.output.is_dir() and not any(paths.output.iterdir()):
            shutil.rmtree(paths.output, ignore_errors=True)  # the SDK's parser made it; leave no trace
    return status


if __name__ == "__main__":
    sys.exit(main())
