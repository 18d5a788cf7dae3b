"""PET/CT volumes and SUV: the SDK loader's and selector's output -> the nstage Study (CT in HU, PET in SUV)."""

from __future__ import annotations

from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec

from nstage.ingest.study_from_series import study_from_sdk
from nstage.progress import StageTimer


class StudyVolumesOperator(Operator):
    """Choose the CT and the attenuation-corrected PET among the selector's matches and read them.

    The series preferences and the volume reading are nstage's (nstage.ingest.study_from_series): the SDK's
    DICOMSeriesToVolumeOperator is not used (it would wrap PET values, see architecture.md).

    Named inputs:
        dicom_study_list: list[DICOMStudy] from DICOMDataLoaderOperator (everything loaded; its
            series name what the folder holds when the selection finds no CT or PET).
        study_selected_series_list: list[StudySelectedSeries] from DICOMSeriesSelectorOperator
            (selections "CT" and "PET" of config/series_selection.json, all matches).

    Named output:
        study: nstage.ingest.study.Study (CT and SUV PET volumes on their own LPS grids).
    """

    IN_STUDIES = "dicom_study_list"
    IN_SELECTION = "study_selected_series_list"
    OUT_STUDY = "study"

    def __init__(self, fragment: Fragment, *args, input_folder: Path, timer: StageTimer, suv_type: str = "bw", **kwargs) -> None:
        self.input_folder = Path(input_folder)
        self.timer = timer
        self.suv_type = suv_type
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input(self.IN_STUDIES)
        spec.input(self.IN_SELECTION)
        spec.output(self.OUT_STUDY)

    def compute(self, op_input, op_output, context) -> None:
        studies = op_input.receive(self.IN_STUDIES)
        selection = op_input.receive(self.IN_SELECTION)
        with self.timer.stage("load study"):
            study = study_from_sdk(self.input_folder, studies or [], selection or [], self.suv_type)
        op_output.emit(study, self.OUT_STUDY)
