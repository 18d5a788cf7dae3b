"""The few calls of Orthanc's REST API the node needs (loopback, basic authentication)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


class OrthancUnavailable(Exception):
    """Orthanc's REST API did not answer (not started yet, restarting, stopped)."""


@dataclass(frozen=True)
class Change:
    seq: int
    change_type: str
    resource_type: str
    resource_id: str


@dataclass(frozen=True)
class InstanceRef:
    orthanc_id: str
    sop_instance_uid: str


class OrthancClient:
    """REST client of one Orthanc; every method raises OrthancUnavailable on connection errors."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.timeout_s = timeout_s

    def _get(self, path: str, **params: Any) -> requests.Response:
        try:
            r = self.session.get(self.url + path, params=params or None, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise OrthancUnavailable(f"Orthanc at {self.url} did not answer {path}: {type(e).__name__}") from e
        r.raise_for_status()
        return r

    def system(self) -> dict[str, Any]:
        return self._get("/system").json()

    def is_ready(self) -> bool:
        try:
            self.system()
            return True
        except (OrthancUnavailable, requests.HTTPError):
            return False

    def last_change(self) -> int:
        return int(self._get("/changes", last="").json()["Last"])

    def changes(self, since: int, limit: int = 100) -> tuple[list[Change], int, bool]:
        """Changes after `since`: (changes, last seq, done)."""
        d = self._get("/changes", since=since, limit=limit).json()
        out = [Change(int(c["Seq"]), c["ChangeType"], c["ResourceType"], c["ID"]) for c in d["Changes"]]
        return out, int(d["Last"]), bool(d["Done"])

    def exists(self, level: str, orthanc_id: str) -> bool:
        try:
            self._get(f"/{level}/{orthanc_id}")
            return True
        except requests.HTTPError as e:
            if e.response is not None and e.response.status_code == 404:
                return False
            raise

    def studies(self) -> list[str]:
        """Orthanc ids of every study it holds."""
        return [str(x) for x in self._get("/studies").json()]

    def study(self, study_id: str) -> dict[str, Any]:
        return self._get(f"/studies/{study_id}").json()

    def study_modalities(self, study_id: str) -> list[str]:
        """Modality of each series of the study (one entry per series, sorted)."""
        return sorted(s.get("MainDicomTags", {}).get("Modality", "") for s in self._get(f"/studies/{study_id}/series").json())

    def study_instance_ids(self, study_id: str) -> dict[str, list[str]]:
        """Orthanc instance IDs per series modality (one call: each series lists its instances). An Orthanc
        ID is a hash of the patient, study, series and SOP Instance UIDs, so the IDs name the instances."""
        ids: dict[str, list[str]] = {}
        for series in self._get(f"/studies/{study_id}/series").json():
            modality = series.get("MainDicomTags", {}).get("Modality", "")
            ids.setdefault(modality, []).extend(series.get("Instances", []))
        return ids

    def study_instances(self, study_id: str, modalities: tuple[str, ...] | None = None) -> list[InstanceRef]:
        """The study's instances (only those of series with one of `modalities`, when given), by SOP Instance UID."""
        refs = []
        for series in self._get(f"/studies/{study_id}/series").json():
            if modalities is not None and series.get("MainDicomTags", {}).get("Modality", "") not in modalities:
                continue
            for i in self._get(f"/series/{series['ID']}/instances").json():
                refs.append(InstanceRef(i["ID"], i["MainDicomTags"].get("SOPInstanceUID", "")))
        return sorted(refs, key=lambda r: r.sop_instance_uid)

    def download_instance(self, instance_id: str, dest: Path) -> None:
        try:
            with self.session.get(f"{self.url}/instances/{instance_id}/file", stream=True, timeout=self.timeout_s) as r:
                r.raise_for_status()
                with open(dest, "wb") as f:
                    for chunk in r.iter_content(1 << 20):
                        f.write(chunk)
        except requests.RequestException as e:
            if isinstance(e, requests.HTTPError):
                raise
            raise OrthancUnavailable(f"Orthanc at {self.url} did not send instance {instance_id}: {type(e).__name__}") from e

    def delete(self, level: str, orthanc_id: str) -> None:
        try:
            r = self.session.delete(f"{self.url}/{level}/{orthanc_id}", timeout=self.timeout_s)
        except requests.RequestException as e:
            raise OrthancUnavailable(f"Orthanc at {self.url} did not answer DELETE: {type(e).__name__}") from e
        if r.status_code != 404:
            r.raise_for_status()

    def find_studies(self, study_instance_uid: str) -> list[str]:
        """Orthanc ids of the studies with this StudyInstanceUID."""
        try:
            r = self.session.post(f"{self.url}/tools/lookup", data=study_instance_uid, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise OrthancUnavailable(f"Orthanc at {self.url} did not answer lookup: {type(e).__name__}") from e
        r.raise_for_status()
        return [x["ID"] for x in r.json() if x.get("Type") == "Study"]

    def series_of_study(self, study_id: str) -> list[dict[str, Any]]:
        return self._get(f"/studies/{study_id}/series").json()

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return self._get(f"/instances/{instance_id}/simplified-tags").json()
