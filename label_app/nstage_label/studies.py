"""The local studies folder as a MONAI Label datastore.

STUDIES holds one folder per study (DICOM files of its CT and PET, in `<study>/dicom/` as `nstage
synth` writes a cohort, or directly in `<study>/`) and optionally `cohort.csv`
(`case,tumour_side,n_tnm8[,n_tnm9]`). The viewers (3D Slicer, OHIF) need one image per study: the
app writes the CT as NIfTI into the datastore folder `STUDIES/monailabel/` (image id = the study
folder's name) and records in the image info where its DICOM study is and, from cohort.csv, its N
stage and tumour side (the train task reads them there). Reviewed labels land in
`STUDIES/monailabel/labels/final/` (MONAI Label's own layout).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from nstage.geometry import save_nifti
from nstage.ingest.study import load_ct_volume

log = logging.getLogger("nstage.label")

DATASTORE = "monailabel"
COHORT_FIELDS = ("tumour_side", "n_tnm8", "n_tnm9")


def study_folders(studies: Path) -> dict[str, Path]:
    """Image id -> DICOM folder of every study under STUDIES (the datastore folder itself excluded)."""
    out: dict[str, Path] = {}
    for d in sorted(p for p in Path(studies).iterdir() if p.is_dir() and p.name != DATASTORE and not p.name.startswith(".")):
        dicom = d / "dicom" if (d / "dicom").is_dir() else d
        if any(f.is_file() for f in dicom.rglob("*")):
            out[d.name] = dicom
    return out


def cohort_facts(studies: Path) -> dict[str, dict[str, str]]:
    """case -> {tumour_side, n_tnm8, n_tnm9} from STUDIES/cohort.csv (empty without one)."""
    path = Path(studies) / "cohort.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {r["case"]: {k: r[k] for k in COHORT_FIELDS if r.get(k)} for r in csv.DictReader(f)}


def prepare_datastore(studies: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """Write the CT NIfTI of every study not yet converted; (datastore folder, image id -> image info to record)."""
    root = Path(studies) / DATASTORE
    root.mkdir(parents=True, exist_ok=True)
    facts = cohort_facts(studies)
    infos: dict[str, dict[str, str]] = {}
    for image_id, dicom in study_folders(studies).items():
        nifti = root / f"{image_id}.nii.gz"
        if not nifti.is_file():
            volume = load_ct_volume(dicom)
            tmp = root / f".{image_id}.tmp.nii.gz"
            save_nifti(volume.array, volume.grid, tmp)
            tmp.replace(nifti)
            log.info("study %s: CT written to the datastore (%s)", image_id, "x".join(map(str, volume.grid.shape)))
        infos[image_id] = {"nstage_study_dir": str(dicom.resolve()), **facts.get(image_id, {})}
    return root, infos
