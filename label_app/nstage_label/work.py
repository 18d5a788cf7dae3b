"""What the MONAI Label tasks do, on top of the nstage stages: analyse a study, write its station map in
the format a viewer asks for, build the DICOM objects a viewer shows beside it, rank studies for
review, turn reviewed station maps into atlases and a training cohort.

Files kept under the datastore folder (`STUDIES/monailabel/nstage/`, or the DICOMweb cache):

    results/<image>.json         the last analysis of a study (result.json of `nstage run`) and its review priority
    results/<image>.blood_pool.nii.gz   the blood-pool region the registration carried to that CT
    atlases/atlas.json           the reviewed atlases (nstage-atlas/1), one folder per reviewed study
    train_cohort/                the reviewed cases as an `nstage train` cohort (truth_stations = reviewed map)
    models/station_cnn/          the classifier retrained on them (used by inference once it exists)
    reviewed_segs/<series>.dcm   (DICOMweb) the reviewers' SEGs read by the train task
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from nstage.analysis.findings import Analysis
from nstage.errors import InputError
from nstage.geometry import Grid, load_nifti, save_nifti
from nstage.ingest.study import load_ct_volume
from nstage.outputs.folder import build_report, build_seg, build_sr
from nstage.outputs.nrrd import save_label_nrrd
from nstage.outputs.station_colours import colour_segments, station_colours
from nstage.paths import atlas_dir
from nstage.pipeline import RunOptions, analyse_study
from nstage.progress import StageTimer
from nstage.stationmap.atlas import FORMAT, MANIFEST, load_atlases, renumber
from nstage.outputs.dicom.reviewed_seg import check_head_to_feet, station_of_segment
from nstage.stations import load_stations

log = logging.getLogger("nstage.label")

STATUS_RANK = {"ok": 0, "suspect": 1, "failed": 2}


def station_labels() -> dict[str, int]:
    """Station name -> label value, in atlas/stations.json order (the task's label table)."""
    return {s.station: s.label for s in load_stations()}


@dataclass(frozen=True)
class MapFormat:
    """How a viewer asked for the station map: MONAI Label's `result_extension`, `result_dtype`, `result_compress`."""

    suffix: str = ".nii.gz"
    dtype: str = "uint8"
    compress: bool = True

    @classmethod
    def of_request(cls, request: Mapping[str, Any]) -> MapFormat:
        suffix = str(request.get("result_extension") or cls.suffix).strip().lower()
        if not suffix.endswith((".nrrd", ".nii", ".nii.gz")):
            raise InputError(f"result_extension {suffix!r}: the station map is written as .nrrd, .nii.gz or .nii")
        dtype = str(request.get("result_dtype") or cls.dtype).strip().lower()
        if dtype not in ("uint8", "uint16"):
            raise InputError(f"result_dtype {dtype!r}: the station map is written as uint8 or uint16")
        compress = request.get("result_compress")
        return cls(suffix, dtype, True if compress is None else flag(compress))

    def save(self, labels: np.ndarray, grid: Grid, path: Path) -> None:
        """The map ``labels`` ([k, j, i] on the CT ``grid``) in this format: NRRD on the CT's DICOM grid, or NIfTI (RAS)."""
        if self.suffix.endswith(".nrrd"):
            save_label_nrrd(labels, grid, path, self.dtype, self.compress)
        else:
            save_nifti(np.asarray(labels).astype(self.dtype), grid, path)


@dataclass(frozen=True)
class StudyAnalysis:
    """One analysed study: nstage's analysis and the result.json content the app answers with."""

    analysis: Analysis
    result: dict[str, Any]


@dataclass(frozen=True)
class ReviewedMap:
    """A reviewer's station map: values on its grid and value -> station."""

    image_id: str
    study_dir: Path
    labels: np.ndarray  # [k, j, i] on grid
    grid: Grid
    names: dict[int, str]


def viewer_objects(done: StudyAnalysis) -> list[Dataset]:
    """The station SEG (BINARY, segments in the report's colours), the findings SR and the PDF report of one analysis."""
    seg = build_seg(done.analysis, "BINARY")  # BINARY: LABELMAP SEGs are unknown to the OHIF that monailabel 0.8.5 ships
    colour_segments(seg, station_colours(done.result))
    sr = build_sr(done.analysis, seg)
    report = build_report(done.analysis, seg, sr[0])
    return [seg.dataset, sr[0], report.dataset]


class Workspace:
    """The app's own files beside a datastore (see the module docstring)."""

    def __init__(self, root: Path, shipped_models: Path) -> None:
        self.root = Path(root)
        self.shipped_models = Path(shipped_models)
        for sub in ("results", "atlases"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- atlas set and models used by inference ------------------------------------------------
    @property
    def atlas_folder(self) -> Path:
        return self.root / "atlases"

    def reviewed_atlases(self) -> list[dict[str, Any]]:
        p = self.atlas_folder / MANIFEST
        return json.loads(p.read_text())["atlases"] if p.is_file() else []

    def atlas_dirs(self) -> tuple[Path, ...]:
        """The shipped atlas, plus the reviewed atlases once there are any (fused by majority vote)."""
        return (atlas_dir(), self.atlas_folder) if self.reviewed_atlases() else (atlas_dir(),)

    @property
    def retrained_models(self) -> Path:
        return self.root / "models"

    def models_dir(self) -> Path:
        """The retrained classifier once a train run exported one, else the shipped models folder."""
        return self.retrained_models if (self.retrained_models / "station_cnn").is_dir() else self.shipped_models

    # -- analysis -------------------------------------------------------------------------------
    def analyse(self, image_id: str, study_dir: Path, labels_out: Path, tumour_side: str | None = None,
                fmt: MapFormat = MapFormat()) -> StudyAnalysis:
        """The stages of `nstage run` on one study; the station map (CT grid) to `labels_out` in ``fmt``."""
        timer = StageTimer()
        options = RunOptions(tumour_side=tumour_side, atlas_dirs=self.atlas_dirs())
        analysis = analyse_study(Path(study_dir), self.models_dir(), options, timer)
        fmt.save(analysis.findings.labels, analysis.study.ct.grid, labels_out)
        pool = analysis.findings.registration.regions.get("blood_pool")
        if pool is not None:
            save_nifti(pool[0].astype(np.uint8), pool[1], self.root / "results" / f"{image_id}.blood_pool.nii.gz")
        result = json.loads(json.dumps(analysis.result, default=_plain))
        result["timings_s"] = {k: round(v, 2) for k, v in timer.timings.items()}
        result["atlas_set"] = [str(p) for p in options.atlas_dirs]
        result["models_dir"] = str(self.models_dir())
        result["review"] = review_priority(result)
        (self.root / "results" / f"{image_id}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        log.info("study %s: registration %s, N stage %s / %s, review priority %.3f", image_id, result["registration"]["status"],
                 result["n_stage"]["tnm8"], result["n_stage"]["tnm9"], result["review"]["priority"])
        return StudyAnalysis(analysis, result)

    def cached_result(self, image_id: str) -> dict[str, Any] | None:
        """The last analysis of a study if it was made with the current atlas set and models."""
        p = self.root / "results" / f"{image_id}.json"
        if not p.is_file():
            return None
        result = json.loads(p.read_text())
        current = ([str(d) for d in self.atlas_dirs()], str(self.models_dir()))
        return result if (result.get("atlas_set"), result.get("models_dir")) == current else None

    def review(self, image_id: str, study_dir: Path) -> dict[str, Any]:
        """The review priority of a study, from its last analysis with the current atlas set, else from a new one.

        A study the pipeline cannot analyse (failed registration, bad input) is recorded as failed, first in line.
        """
        cached = self.cached_result(image_id)
        if cached is not None:
            return cached["review"]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return self.analyse(image_id, study_dir, Path(tmp) / "stations.nii.gz").result["review"]
            except InputError as exc:
                review = {"priority": float(STATUS_RANK["failed"] + 1), "registration_status": "failed",
                          "registration_reasons": [str(exc)], "most_uncertain_station": None, "uncertainty": 1.0}
                log.warning("study %s: not analysed (%s)", image_id, exc)
                (self.root / "results" / f"{image_id}.json").write_text(json.dumps(
                    {"atlas_set": [str(p) for p in self.atlas_dirs()], "models_dir": str(self.models_dir()), "error": str(exc),
                     "review": review}, indent=1) + "\n")
                return review

    # -- reviewed station maps -> atlases and a training cohort --------------------------------
    def add_reviewed(self, reviewed: ReviewedMap) -> dict[str, Any]:
        """Make a reviewed (final) station map an atlas of the reviewed set (its CT read from the study's DICOM)."""
        image_id = reviewed.image_id
        check_head_to_feet(reviewed.labels, reviewed.grid, reviewed.names, f"the reviewed station map of {image_id}")
        folder = self.atlas_folder / image_id
        tmp = self.atlas_folder / f".{image_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ct = load_ct_volume(reviewed.study_dir)
        save_nifti(ct.array, ct.grid, tmp / "ct.nii.gz")
        save_nifti(np.asarray(reviewed.labels).astype(np.uint16), reviewed.grid, tmp / "stations_as_submitted.nii.gz")
        (tmp / "names.json").write_text(json.dumps({str(k): v for k, v in sorted(reviewed.names.items())}, indent=1) + "\n")
        entry: dict[str, Any] = {"name": f"reviewed_{image_id}", "ct": f"{image_id}/ct.nii.gz",
                                 "labels": f"{image_id}/stations_as_submitted.nii.gz", "names": f"{image_id}/names.json"}
        pool = self.root / "results" / f"{image_id}.blood_pool.nii.gz"
        if pool.is_file():
            shutil.copyfile(pool, tmp / "blood_pool.nii.gz")
            entry["regions"] = {"blood_pool": f"{image_id}/blood_pool.nii.gz"}
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
        entries = [e for e in self.reviewed_atlases() if e["name"] != entry["name"]] + [entry]
        manifest = {"format": FORMAT, "description": "Reviewed station maps from the MONAI Label app (label_app/), fused with the "
                    "shipped atlas by majority vote.", "atlases": entries}
        (self.atlas_folder / ".atlas.json.tmp").write_text(json.dumps(manifest, indent=1) + "\n")
        (self.atlas_folder / ".atlas.json.tmp").replace(self.atlas_folder / MANIFEST)
        load_atlases([self.atlas_folder])  # validates the new entry (names, CT, overlap) with the atlas reader
        return entry

    def train_classifier(self, cases: Sequence[Mapping[str, Any]], epochs: int | None) -> dict[str, Any]:
        """`nstage train --stations truth` on the reviewed cases (their reviewed station maps as the station truth)."""
        cohort = self.root / "train_cohort"
        shutil.rmtree(cohort, ignore_errors=True)
        cohort.mkdir(parents=True)
        rows = []
        for c in cases:
            d = cohort / c["image"]
            d.mkdir()
            os.symlink(Path(c["study_dir"]).resolve(), d / "dicom")
            atlas = load_atlases([self.atlas_folder])
            reviewed = next(a for a in atlas if a.name == f"reviewed_{c['image']}")
            save_nifti(reviewed.labels, reviewed.label_grid, d / "truth_stations.nii.gz")
            rows.append({"case": c["image"], "tumour_side": c["tumour_side"], "n_tnm8": c["n_tnm8"], "n_tnm9": c.get("n_tnm9", "")})
        with (cohort / "cohort.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["case", "tumour_side", "n_tnm8", "n_tnm9"])
            w.writeheader()
            w.writerows(rows)
        cmd = [sys.executable, "-m", "nstage.cli", "train", "--cohort", str(cohort), "--stations", "truth",
               "--out", str(self.root / "checkpoint"), "--export", str(self.retrained_models)]
        if epochs:
            cmd += ["--epochs", str(int(epochs))]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InputError(f"nstage train failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        return {"cases": len(rows), "models": str(self.retrained_models), "command": "nstage train --stations truth"}


def submitted_map(image_id: str, study_dir: Path, label_file: Path, label_info: Any) -> ReviewedMap:
    """A label map submitted to MONAI Label (`PUT /datastore/label`, NIfTI) with its `label_info`."""
    raw, grid = load_nifti(label_file)
    return ReviewedMap(image_id, Path(study_dir), np.asarray(raw), grid, name_table(label_info, label_file))


def name_table(label_info: Any, label_file: Path) -> dict[int, str]:
    """Label value -> station name of a submitted label map, from MONAI Label's `label_info`.

    3D Slicer sends the segments in the reviewer's order: a list of {"name", "idx"} (idx = the value
    in the file; without idx, the i-th entry names the i-th smallest non-zero value, as MONAI Label's
    DICOM SEG writer reads it), or an object {name: value}. A name is a station ("4R") or the
    app's SEG label of one ("4R Lower paratracheal"); other names are refused.
    """
    if isinstance(label_info, str):
        label_info = json.loads(label_info)
    if isinstance(label_info, Mapping) and "label_info" in label_info:
        label_info = label_info["label_info"]
    table: dict[int, str] = {}
    if isinstance(label_info, Mapping):
        table = {int(v): str(k) for k, v in label_info.items()}
    elif isinstance(label_info, list):
        raw, _ = load_nifti(label_file)
        present = [int(v) for v in np.unique(raw) if v]
        for i, e in enumerate(label_info):
            value = e.get("idx", e.get("label")) if isinstance(e, Mapping) else None
            if value is None:
                if i >= len(present):
                    continue
                value = present[i]
            table[int(value)] = str(e["name"] if isinstance(e, Mapping) else e)
    else:
        raise InputError("label_info must list the segments ({name, idx}) of the submitted station map")
    table = {v: n.strip() for v, n in table.items() if v > 0 and n.strip().lower() != "background"}
    unknown = sorted(n for n in table.values() if station_of_segment(n) is None)
    if unknown:
        raise InputError(f"segments {', '.join(unknown)} are not stations of atlas/stations.json; name segments by station")
    table = {v: str(station_of_segment(n)) for v, n in table.items()}
    if not table:
        raise InputError("label_info names no station segment")
    renumber(np.zeros(1, np.int64), table, "label_info")  # same checks as an atlas name table
    return table


def review_priority(result: Mapping[str, Any]) -> dict[str, Any]:
    """How much a study is worth a reviewer's time: registration status first, then classifier uncertainty.

    priority = rank of the registration status (ok 0, suspect 1, failed 2) + the largest station
    uncertainty (1 - |2p - 1|, 1 at p = 0.5): a suspect registration always comes before an ok one,
    and among equals the call nearest to the threshold first.
    """
    status = result["registration"]["status"]
    probs = {s: v.get("probability") for s, v in result.get("stations", {}).items()}
    unc = {s: 1.0 - abs(2.0 * float(p) - 1.0) for s, p in probs.items() if p is not None}
    worst = max(unc, key=unc.get) if unc else None  # type: ignore[arg-type]
    u = unc[worst] if worst else 0.0
    return {"priority": round(STATUS_RANK.get(status, 2) + u, 4), "registration_status": status,
            "registration_reasons": result["registration"].get("reasons", []), "most_uncertain_station": worst,
            "uncertainty": round(u, 4)}


def flag(v: Any) -> bool:
    """A yes/no request parameter (bool, or its text form)."""
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON: {type(v).__name__}")
