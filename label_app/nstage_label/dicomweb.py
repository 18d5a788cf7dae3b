"""The DICOMweb datastore (e.g. Orthanc with its DICOMweb plugin): CT series as images, the PET of the same study as DICOM.

MONAI Label lists the CT series of the server as images (image id = SeriesInstanceUID) and caches
each as DICOM (`<cache>/<series>/`) and NIfTI for the viewers. SUV needs the PET's DICOM headers
(units, decay correction, dose, weight), which a NIfTI conversion drops, so for an analysis the
PET series of the CT's study are fetched as DICOM into `<cache>/nstage/studies/<series>/pet/`
beside the cached CT's files (hard links), and nstage reads that folder as a study.

What goes back to the server: after an inference, the station SEG, the findings SR and the PDF
report as new series of the study (`store`), for the viewers; a reviewed station map as a SEG
that references the CT series (OHIF's "Export DICOM SEG", or MONAI Label's label upload through
dcmqi's itkimage2segimage from the PyPI `dcmqi`). A SEG counts as a review (MONAI Label's `final`
label) unless it is one of the app's own (its Manufacturer is the app's, `config/dicom_output.json`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from nstage.outputs.dicom.series import output_config

log = logging.getLogger("nstage.label")

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
MODALITY = "00080060"


@dataclass(frozen=True)
class ReviewedSeg:
    """A reviewer's SEG series in the PACS and the CT series it references."""

    study_uid: str
    series_uid: str
    ct_series: str
    written: str  # ContentDate + ContentTime (else SeriesDate + SeriesTime): the newest review of a CT wins


def _no_bulk_data(*_: object) -> bytes:
    """Series metadata is read for its header; pixel data is not fetched."""
    return b""


class NStageDICOMwebDatastore(DICOMWebDatastore):
    """MONAI Label's DICOMweb datastore, less the patient ID it would copy into image and label info (and so its logs),
    with the app's own SEGs kept apart from the reviews."""

    def _dicom_info(self, series_id: str) -> dict[str, Any]:
        info = super()._dicom_info(series_id)
        info.pop("PatientID", None)
        return info

    @property
    def cache_root(self) -> Path:
        return Path(self._datastore_path)

    # -- what goes back to the PACS ---------------------------------------------------------------
    def store(self, datasets: list[Dataset]) -> dict[str, str]:
        """STOW-RS the objects (new series of their study); modality -> SeriesInstanceUID stored."""
        self._client.store_instances(datasets)
        return {str(ds.Modality): str(ds.SeriesInstanceUID) for ds in datasets}

    # -- reviews: SEG series that reference a listed CT series ------------------------------------
    def reviewed_segs(self) -> dict[str, ReviewedSeg]:
        """CT series -> its newest reviewed SEG (the app's own SEGs left out)."""
        images = set(self.list_images())
        own = output_config()["equipment"]["manufacturer"]
        newest: dict[str, ReviewedSeg] = {}
        for found in self._client.search_for_series(search_filters={"Modality": "SEG"}):
            study, series = found[STUDY_UID]["Value"][0], found[SERIES_UID]["Value"][0]
            meta = Dataset.from_json(self._client.retrieve_series_metadata(study, series)[0], bulk_data_uri_handler=_no_bulk_data)
            if str(meta.get("Manufacturer", "")) == own or not meta.get("ReferencedSeriesSequence"):
                continue
            ct = str(meta.ReferencedSeriesSequence[0].SeriesInstanceUID)
            if ct not in images:
                continue
            written = (str(meta.get("ContentDate", "")) + str(meta.get("ContentTime", ""))) or \
                      (str(meta.get("SeriesDate", "")) + str(meta.get("SeriesTime", "")))
            seg = ReviewedSeg(study, series, ct, written)
            if ct not in newest or (seg.written, seg.series_uid) > (newest[ct].written, newest[ct].series_uid):
                newest[ct] = seg
        return newest

    def fetch_seg(self, seg: ReviewedSeg, folder: Path) -> Path:
        """The reviewed SEG's (single) instance as a file in ``folder`` (fetched once)."""
        path = Path(folder) / f"{seg.series_uid}.dcm"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            instances = self._client.retrieve_series(seg.study_uid, seg.series_uid)
            if len(instances) != 1:
                raise ValueError(f"SEG series {seg.series_uid} holds {len(instances)} instances; a station map is one SEG instance")
            tmp = path.with_suffix(".tmp")
            instances[0].save_as(tmp, enforce_file_format=True)
            tmp.replace(path)
        return path

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return sorted(self.reviewed_segs())

    def _download_labeled_data(self) -> None:
        """MONAI Label's `datalist()`: the reviews as its final labels (the app's own SEGs are not reviews)."""
        for ct, seg in self.reviewed_segs().items():
            self.get_image_uri(image_id=ct)
            self.get_label_uri(label_id=seg.series_uid, label_tag=DefaultLabelTag.FINAL, image_id=ct)

    # -- the study as nstage reads it -------------------------------------------------------------
    def study_folder(self, ct_series: str, root: Path) -> Path:
        """A study folder of the cached CT series and the PET series of its study (fetched once), for nstage."""
        ct_dir = Path(os.path.realpath(os.path.join(self._datastore.image_path(), ct_series)))
        if not ct_dir.is_dir() or not any(ct_dir.iterdir()):
            self.get_image_uri(ct_series)  # MONAI Label downloads the series into its cache
        folder = root / ct_series
        if (folder / ".complete").is_file():
            return folder
        tmp = root / f".{ct_series}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "pet").mkdir(parents=True)
        (tmp / "ct").mkdir()
        for f in ct_dir.iterdir():  # hard links (a copy across file systems): nstage's DICOM index does not follow symlinks
            try:
                os.link(f, tmp / "ct" / f.name)
            except OSError:
                shutil.copyfile(f, tmp / "ct" / f.name)
        series = self._client.search_for_series(search_filters={"SeriesInstanceUID": ct_series})
        study = series[0][STUDY_UID]["Value"][0]
        pets = self._client.search_for_series(search_filters={"StudyInstanceUID": study, "Modality": "PT"})
        for pet in pets:
            uid = pet[SERIES_UID]["Value"][0]
            for i, ds in enumerate(self._client.retrieve_series(study, uid)):
                (tmp / "pet" / uid).mkdir(exist_ok=True)
                ds.save_as(tmp / "pet" / uid / f"{i:05d}.dcm", enforce_file_format=True)
        log.info("CT series %s: %d PET series of its study fetched as DICOM", ct_series, len(pets))
        (tmp / ".complete").write_text("")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
        return folder
