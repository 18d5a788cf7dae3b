"""The app's Holoscan operators: one thin operator per domain stage (ports in, call nstage, ports out).

Graph (app.py):  DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator -> StudyVolumesOperator
-> AtlasRegistrationOperator -> StationFeaturesOperator -> StationClassifierOperator -> NStageOperator
-> StationSegOperator / FindingsSrOperator / ReportPdfOperator -> SaveOutputsOperator.
"""

from operators.classifier import StationClassifierOperator
from operators.n_stage import NStageOperator
from operators.pdf_writer import ReportPdfOperator
from operators.registration import AtlasRegistrationOperator
from operators.save_outputs import SaveOutputsOperator
from operators.seg_writer import StationSegOperator
from operators.sr_writer import FindingsSrOperator
from operators.station_features import StationFeaturesOperator
from operators.study_volumes import StudyVolumesOperator

__all__ = [
    "AtlasRegistrationOperator",
    "FindingsSrOperator",
    "NStageOperator",
    "ReportPdfOperator",
    "SaveOutputsOperator",
    "StationClassifierOperator",
    "StationFeaturesOperator",
    "StationSegOperator",
    "StudyVolumesOperator",
]
