"""The DICOMweb datastore (e.g. Orthanc with its DICOMweb plugin): CT series as images, the PET of the same study as DICOM.

MONAI Label lists the CT series of the server as images (image id = SeriesInstanceUID) and caches
each as DICOM (`<cache>/<series>/`) and NIfTI for the viewers. SUV needs the PET's DICOM headers
(units, decay correction, dose, weight), which a NIfTI conversion drops, so for an analysis the
PET series of the CT's study are fetched as DICOM into `<cache>/nstage/studies/<series>/pet/`
beside the cached CT's files (hard links), and nstage reads that folder as a study. `final` labels go back to
the server as DICOM SEG (MONAI Label's datastore, dcmqi's itkimage2segimage from the PyPI `dcmqi`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from monailabel.datastore.dicom import DICOMWebDatastore

log = logging.getLogger("nstage.label")

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"


class NStageDICOMwebDatastore(DICOMWebDatastore):
    """MONAI Label's DICOMweb datastore, less the patient ID it would copy into image and label info (and so its logs)."""

    def _dicom_info(self, series_id: str) -> dict[str, Any]:
        info = super()._dicom_info(series_id)
        info.pop("PatientID", None)
        return info

    @property
    def cache_root(self) -> Path:
        return Path(self._datastore_path)

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
