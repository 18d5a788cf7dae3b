"""The nstage MONAI Label app: review and correct lymph node stations in 3D Slicer / OHIF, and learn from it.

    .venv-label/bin/monailabel start_server --app label_app --studies STUDIES [--conf models DIR]

STUDIES is a local folder of studies (one DICOM folder per study, e.g. a cohort from `nstage
synth`; see nstage_label/studies.py) or a DICOMweb server's URL (e.g. Orthanc's
http://host:8042/dicom-web; nstage_label/dicomweb.py). Tasks: infer `stations`, train `stations`, scoring
`review_priority`, strategy `review_first` (nstage_label/tasks.py). Where things are kept:
docs/monai-label.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from nstage_label.dicomweb import NStageDICOMwebDatastore
from nstage_label.studies import prepare_datastore
from nstage_label.tasks import ReviewFirst, ReviewPriority, StationsInfer, StationsTrain
from nstage_label.work import Workspace, station_labels

from nstage import __version__

log = logging.getLogger("nstage.label")


class NStageLabelApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.source = studies
        self.models = Path(conf.get("models") or Path(app_dir).resolve().parent / "models")  # the shipped models by default
        self._image_infos: dict[str, dict[str, str]] = {}
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="nstage",
                         description="Mediastinal lymph node stations and N staging on FDG PET/CT (nstage): review and correct",
                         version=__version__, labels=station_labels())
        for image_id, info in self._image_infos.items():
            self._datastore.update_image_info(image_id, info)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return self._init_dicomweb()
        folder, self._image_infos = prepare_datastore(Path(self.studies))
        self.workspace = Workspace(folder / "nstage", self.models)
        log.info("datastore: %d studies in %s", len(self._image_infos), folder)
        return LocalDatastore(str(folder), extensions=("*.nii.gz",), auto_reload=True)

    def _init_dicomweb(self) -> Datastore:
        self.studies = self.studies.rstrip("/")
        user = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME
        password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD
        session = create_session_from_user_pass(user, password) if user and password else None
        client = DICOMwebClientX(url=self.studies, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                                 wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX, stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
        self._download_dcmqi_tools()  # finds itkimage2segimage on PATH (PyPI dcmqi in .venv-label): no download
        cache = (settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
        ds = NStageDICOMwebDatastore(client=client, search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER, cache_path=cache,
                                     fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME, convert_to_nifti=True)
        self.workspace = Workspace(ds.cache_root / "nstage", self.models)
        log.info("datastore: DICOMweb, cache in %s", ds.cache_root)
        return ds

    # image URI or id -> (image id, DICOM study folder with the CT and the PET)
    def _resolve_id(self, image_id: str) -> tuple[str, Path]:
        if isinstance(self._datastore, NStageDICOMwebDatastore):
            return image_id, self._datastore.study_folder(image_id, self.workspace.root / "studies")
        info = self._datastore.get_image_info(image_id)
        if not info.get("nstage_study_dir"):
            raise ValueError(f"image {image_id} is not a study of {self.source}")
        return image_id, Path(info["nstage_study_dir"])

    def _resolve_uri(self, uri: str) -> tuple[str, Path]:
        if not os.path.exists(uri):  # an image id (main.infer keeps it)
            return self._resolve_id(uri)
        name = os.path.basename(uri.rstrip("/"))
        return self._resolve_id(name.removesuffix(".nii.gz"))

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label hands the task the image's URI (for DICOMweb a temporary NIfTI at first): keep the id beside it."""
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            request = {**request, "nstage_image_id": image}
        return super().infer(request, datastore)

    def init_infers(self) -> dict[str, Any]:
        return {"stations": StationsInfer(self.workspace, self._resolve_uri)}

    def _review_priority(self) -> ReviewPriority:
        if not hasattr(self, "_priority"):
            self._priority = ReviewPriority(self.workspace, self._resolve_id)
        return self._priority

    def init_scoring_methods(self) -> dict[str, Any]:
        return {"review_priority": self._review_priority()}

    def init_strategies(self) -> dict[str, Any]:
        return {"review_first": ReviewFirst(self._review_priority())}

    def init_trainers(self) -> dict[str, Any]:
        return {"stations": StationsTrain(self.workspace, self._resolve_id)}
