"""MONAI Label tasks of the app, each a thin adapter over `work.Workspace` (and so over nstage's stages).

- `StationsInfer` (infer task `stations`, type segmentation): the 17 station labels by name;
  returns the station map on the CT grid, in the format the viewer asks for (`result_extension`
  .nrrd on the CT's DICOM grid, as OHIF's MONAI Label panel asks, or NIfTI), and result.json's
  content (calls, SUV figures, index nodes, N stage TNM 8/9, registration status and figures);
  on a DICOMweb datastore it can store the study's SEG, SR and PDF report back (`publish`).
- `ReviewPriority` (scoring method) and `ReviewFirst` (active-learning strategy): studies ranked by
  `work.review_priority` (suspect / failed registrations first, then classifier uncertainty).
- `StationsTrain` (train task `stations`): reviewed (final) station maps become atlases of the
  registration's multi-atlas set; with `classifier` (default on) `nstage train` retrains the
  station classifier on the reviewed cases from the N stage and tumour side in the image info.
  Where the reviewed maps come from depends on the datastore (`ReviewedMaps`, main.py).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from .work import MapFormat, ReviewedMap, StudyAnalysis, Workspace, flag, station_labels

log = logging.getLogger("nstage.label")

# image id or URI (what MONAI Label hands an infer task) -> (image id, DICOM study folder with CT and PET)
StudyResolver = Callable[[str], tuple[str, Path]]
# (image id, analysed study) -> modality -> SeriesInstanceUID of the objects stored back to the PACS
Publisher = Callable[[str, StudyAnalysis], dict[str, str]]
# the datastore -> the reviewed station maps it holds
ReviewedMaps = Callable[[Datastore], Iterable[ReviewedMap]]


class StationsInfer(InferTask):
    def __init__(self, workspace: Workspace, resolve: StudyResolver, publish: Publisher | None = None) -> None:
        super().__init__(type=InferType.SEGMENTATION, labels=station_labels(), dimension=3,
                         description="IASLC lymph node stations by atlas registration, with the nstage station calls and N stage",
                         config={"tumour_side": ""})
        self.workspace = workspace
        self.resolve = resolve
        self.publish = publish

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image_id, study_dir = self.resolve(str(request.get("nstage_image_id") or request["image"]))
        side = str(request.get("tumour_side") or "").strip() or None
        fmt = MapFormat.of_request(request)
        with tempfile.NamedTemporaryFile(suffix=fmt.suffix, delete=False) as f:  # MONAI Label removes it after the answer
            out = f.name
        done = self.workspace.analyse(image_id, study_dir, Path(out), tumour_side=side, fmt=fmt)
        result = dict(done.result)
        if self.publish is not None:
            result["stored_series"] = self.publish(image_id, done)
        return out, {"label_names": station_labels(), **result}


def _unreviewed(datastore: Datastore) -> list[str]:
    return sorted(datastore.get_unlabeled_images(DefaultLabelTag.FINAL))


class ReviewPriority(ScoringMethod):
    """Analyse every unreviewed study not yet analysed with the current atlas set; record its priority in the image info."""

    def __init__(self, workspace: Workspace, resolve_id: Callable[[str], tuple[str, Path]]) -> None:
        super().__init__("Review priority: suspect or failed atlas registration first, then the station call nearest to the threshold")
        self.workspace = workspace
        self.resolve_id = resolve_id

    def score(self, image_id: str, datastore: Datastore) -> dict[str, Any]:
        review = self.workspace.review(image_id, self.resolve_id(image_id)[1])
        datastore.update_image_info(image_id, {"nstage_review": review})
        return review

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        return {image_id: self.score(image_id, datastore) for image_id in _unreviewed(datastore)}


class ReviewFirst(Strategy):
    """The unreviewed study of highest review priority (ties: by image id)."""

    def __init__(self, scoring: ReviewPriority) -> None:
        super().__init__("Next study to review: suspect registrations first, then uncertain station calls")
        self.scoring = scoring

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        scores = self.scoring(request, datastore)
        if not scores:
            return {}
        best = min(scores, key=lambda i: (-scores[i]["priority"], i))
        return {"id": best, **scores[best]}


class StationsTrain(TrainTask):
    def __init__(self, workspace: Workspace, reviewed_maps: ReviewedMaps) -> None:
        super().__init__("Reviewed station maps join the multi-atlas set; the station classifier is retrained on the reviewed cases")
        self.workspace = workspace
        self.reviewed_maps = reviewed_maps

    def config(self) -> dict[str, Any]:
        return {"classifier": True, "epochs": 0}

    def stats(self) -> dict[str, Any]:
        return {"reviewed_atlases": [e["name"] for e in self.workspace.reviewed_atlases()]}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        added, cases, skipped = [], [], []
        for reviewed in self.reviewed_maps(datastore):
            image_id = reviewed.image_id
            entry = self.workspace.add_reviewed(reviewed)
            added.append(entry["name"])
            image_info = datastore.get_image_info(image_id)
            if image_info.get("tumour_side") and image_info.get("n_tnm8"):
                cases.append({"image": image_id, "study_dir": reviewed.study_dir, **image_info})
            else:
                skipped.append(image_id)
        out: dict[str, Any] = {"reviewed_atlases": added, "atlas_set": [str(p) for p in self.workspace.atlas_dirs()],
                               "classifier_cases": [c["image"] for c in cases], "no_n_stage": skipped}
        if flag(request.get("classifier", True)) and cases:
            out["classifier"] = self.workspace.train_classifier(cases, int(request.get("epochs") or 0) or None)
        log.info("train: %d reviewed atlases, classifier retrained on %d cases", len(added), len(cases) if "classifier" in out else 0)
        return out
