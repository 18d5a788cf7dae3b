"""The nstage MONAI Label app: review and correct lymph node stations in OHIF / 3D Slicer, and learn from it.

    .venv-label/bin/monailabel start_server --app label_app --studies STUDIES [--conf models DIR] [--conf store_outputs false]

STUDIES is a local folder of studies (one DICOM folder per study, e.g. a cohort from `nstage
synth`; see nstage_label/studies.py) or a DICOMweb server's URL (e.g. Orthanc's
http://host:8042/dicom-web; nstage_label/dicomweb.py). Tasks: infer `stations`, train `stations`, scoring
`review_priority`, strategy `review_first` (nstage_label/tasks.py). Where things are kept, the viewers'
steps and the credentials: docs/monai-label.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from nstage_label.dicomweb import NStageDICOMwebDatastore
from nstage_label.studies import prepare_datastore
from nstage_label.tasks import ReviewFirst, ReviewPriority, StationsInfer, StationsTrain
from nstage_label.work import ReviewedMap, StudyAnalysis, Workspace, flag, station_labels, submitted_map, viewer_objects

from nstage import __version__
from nstage.errors import InputError
from nstage.ingest.study import load_ct_volume
from nstage.outputs.dicom.reviewed_seg import read_station_seg

log = logging.getLogger("nstage.label")


def dicomweb_credentials() -> tuple[str, str] | None:
    """The PACS user and password: MONAI_LABEL_DICOMWEB_USERNAME / _PASSWORD (what MONAI Label's viewer proxy reads),
    else MONAI_LABEL_DATASTORE_USERNAME / _PASSWORD. Both the datastore and the proxy use the pair found."""
    for user, password in ((settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD),
                           (settings.MONAI_LABEL_DATASTORE_USERNAME, settings.MONAI_LABEL_DATASTORE_PASSWORD)):
        if user and password:
            return user, password
    return None


class NStageLabelApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.source = studies
        self.models = Path(conf.get("models") or Path(app_dir).resolve().parent / "models")  # the shipped models by default
        self.store_outputs = flag(conf.get("store_outputs", "true"))  # DICOMweb: SEG, SR and PDF back to the PACS
        self._image_infos: dict[str, dict[str, str]] = {}
        # OHIF's MONAI Label panel reads the app's labels as a list; the infer task's labels map name -> value
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="nstage",
                         description="Mediastinal lymph node stations and N staging on FDG PET/CT (nstage): review and correct",
                         version=__version__, labels=list(station_labels()))
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
        credentials = dicomweb_credentials()
        if credentials:  # the viewer's proxy (/proxy/dicom/) reads the DICOMWEB pair: give it the one found
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD = credentials
        session = create_session_from_user_pass(*credentials) if credentials else None
        client = DICOMwebClientX(url=self.studies, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                                 wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX, stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
        self._download_dcmqi_tools()  # finds itkimage2segimage on PATH (PyPI dcmqi in .venv-label): no download
        cache = (settings.MONAI_LABEL_DATASTORE_CACHE_PATH or settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
        ds = NStageDICOMwebDatastore(client=client, search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER, cache_path=cache,
                                     fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME, convert_to_nifti=True)
        self.workspace = Workspace(ds.cache_root / "nstage", self.models)
        log.info("datastore: DICOMweb, cache in %s; SEG, SR and PDF of each inference %s", ds.cache_root,
                 "stored back" if self.store_outputs else "not stored back (store_outputs false)")
        return ds

    @property
    def _dicomweb(self) -> NStageDICOMwebDatastore | None:
        return self._datastore if isinstance(self._datastore, NStageDICOMwebDatastore) else None

    # image URI or id -> (image id, DICOM study folder with the CT and the PET)
    def _resolve_id(self, image_id: str) -> tuple[str, Path]:
        if self._dicomweb is not None:
            if image_id not in self._dicomweb.list_images():
                raise InputError(f"series {image_id} is not a CT series of {self.studies}: run the model on the CT")
            return image_id, self._dicomweb.study_folder(image_id, self.workspace.root / "studies")
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

    # -- what goes back to the PACS, what comes back from the reviewers ------------------------------
    def _publish(self, image_id: str, done: StudyAnalysis) -> dict[str, str]:
        """The study's SEG, SR and PDF report as new series of the study in the PACS (modality -> series UID)."""
        assert self._dicomweb is not None
        try:
            stored = self._dicomweb.store(viewer_objects(done))
        except Exception as exc:  # the map still goes to the viewer; the answer says why nothing was stored
            log.warning("CT series %s: SEG, SR and PDF not stored in the PACS (%s: %s)", image_id, type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}
        log.info("CT series %s: %s stored as new series of its study", image_id, ", ".join(sorted(stored)))
        return stored

    def _reviewed_maps(self, datastore: Datastore) -> Iterator[ReviewedMap]:
        """The reviewed station maps: the newest reviewer's SEG of each CT in the PACS (DICOMweb), else the final labels."""
        if isinstance(datastore, NStageDICOMwebDatastore):
            for ct_series, seg in sorted(datastore.reviewed_segs().items()):
                study_dir = self._resolve_id(ct_series)[1]
                ct = load_ct_volume(study_dir / "ct")
                labels, names = read_station_seg(datastore.fetch_seg(seg, self.workspace.root / "reviewed_segs"), ct.files, ct.grid)
                yield ReviewedMap(ct_series, study_dir, labels, ct.grid, names)
            return
        for image_id in sorted(datastore.get_labeled_images(DefaultLabelTag.FINAL)):
            label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
            info = datastore.get_label_info(label_id, DefaultLabelTag.FINAL)
            yield submitted_map(image_id, self._resolve_id(image_id)[1], Path(datastore.get_label_uri(label_id, DefaultLabelTag.FINAL)),
                                info.get("label_info", info))

    # -- tasks -------------------------------------------------------------------------------------
    def init_infers(self) -> dict[str, Any]:
        publish = self._publish if self._dicomweb is not None and self.store_outputs else None
        return {"stations": StationsInfer(self.workspace, self._resolve_uri, publish)}

    def _review_priority(self) -> ReviewPriority:
        if not hasattr(self, "_priority"):
            self._priority = ReviewPriority(self.workspace, self._resolve_id)
        return self._priority

    def init_scoring_methods(self) -> dict[str, Any]:
        return {"review_priority": self._review_priority()}

    def init_strategies(self) -> dict[str, Any]:
        return {"review_first": ReviewFirst(self._review_priority())}

    def init_trainers(self) -> dict[str, Any]:
        return {"stations": StationsTrain(self.workspace, self._reviewed_maps)}
