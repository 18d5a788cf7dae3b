"""MONAI Label tasks of the app, each a thin adapter over `work.Workspace` (and so over nstage's stages).

- `StationsInfer` (infer task `stations`, type segmentation): the 17 station labels by name;
  returns the station map on the CT grid and result.json's content (calls, SUV figures, index nodes,
  N stage TNM 8/9, registration status and figures).
- `ReviewPriority` (scoring method) and `ReviewFirst` (active-learning strategy): studies ranked by
  `work.review_priority` (suspect / failed registrations first, then classifier uncertainty).
- `StationsTrain` (train task `stations`): reviewed (final) station maps become atlases of the
  registration's multi-atlas set; with `classifier` (default on) `nstage train` retrains the
  station classifier on the reviewed cases from the N stage and tumour side in the image info.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from .work import Workspace, station_labels

log = logging.getLogger("nstage.label")

# image id or URI (what MONAI Label hands an infer task) -> (image id, DICOM study folder with CT and PET)
StudyResolver = Callable[[str], tuple[str, Path]]


class StationsInfer(InferTask):
    def __init__(self, workspace: Workspace, resolve: StudyResolver) -> None:
        super().__init__(type=InferType.SEGMENTATION, labels=station_labels(), dimension=3,
                         description="IASLC lymph node stations by atlas registration, with the nstage station calls and N stage",
                         config={"tumour_side": ""})
        self.workspace = workspace
        self.resolve = resolve

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image_id, study_dir = self.resolve(str(request.get("nstage_image_id") or request["image"]))
        side = str(request.get("tumour_side") or "").strip() or None
        with tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False) as f:  # MONAI Label removes it after the answer
            out = f.name
        result = self.workspace.analyse(image_id, study_dir, Path(out), tumour_side=side)
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
    def __init__(self, workspace: Workspace, resolve_id: Callable[[str], tuple[str, Path]]) -> None:
        super().__init__("Reviewed station maps join the multi-atlas set; the station classifier is retrained on the reviewed cases")
        self.workspace = workspace
        self.resolve_id = resolve_id

    def config(self) -> dict[str, Any]:
        return {"classifier": True, "epochs": 0}

    def stats(self) -> dict[str, Any]:
        return {"reviewed_atlases": [e["name"] for e in self.workspace.reviewed_atlases()]}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        added, cases, skipped = [], [], []
        for image_id in sorted(datastore.get_labeled_images(DefaultLabelTag.FINAL)):
            label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
            info = datastore.get_label_info(label_id, DefaultLabelTag.FINAL)
            ct = datastore.get_image_uri(image_id)
            entry = self.workspace.add_reviewed(image_id, Path(self.ct_nifti(image_id, ct)),
                                                Path(datastore.get_label_uri(label_id, DefaultLabelTag.FINAL)), info.get("label_info", info))
            added.append(entry["name"])
            image_info = datastore.get_image_info(image_id)
            if image_info.get("tumour_side") and image_info.get("n_tnm8"):
                cases.append({"image": image_id, "study_dir": self.resolve_id(image_id)[1], **image_info})
            else:
                skipped.append(image_id)
        out: dict[str, Any] = {"reviewed_atlases": added, "atlas_set": [str(p) for p in self.workspace.atlas_dirs()],
                               "classifier_cases": [c["image"] for c in cases], "no_n_stage": skipped}
        if _flag(request.get("classifier", True)) and cases:
            out["classifier"] = self.workspace.train_classifier(cases, int(request.get("epochs") or 0) or None)
        log.info("train: %d reviewed atlases, classifier retrained on %d cases", len(added), len(cases) if "classifier" in out else 0)
        return out

    def ct_nifti(self, image_id: str, uri: str) -> str:
        return uri  # the local datastore's image is the CT NIfTI; the DICOMweb app overrides this


def _flag(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")
