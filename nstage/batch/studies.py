"""Which folders of a studies root are studies, and what their DICOM input is.

A study is each immediate sub-folder of STUDIES_ROOT whose name does not start with "." (hidden
folders, caches such as `.nstage_cache`, are not studies). Its input for the pipeline is the
sub-folder's `dicom/` folder when it has one (the layout `nstage synth` writes, beside truth files
that are not DICOM), else the sub-folder itself (the DICOM files of one PET/CT study, any names and
depth). The output root is never a study, even when it lies inside the studies root.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from nstage.errors import InputError


@dataclass(frozen=True)
class BatchStudy:
    """One study of a batch: its folder name (the name of its output folder), its folder and its pipeline input."""

    name: str
    folder: Path
    input_dir: Path


def find_studies(root: Path, out_root: Path | None = None) -> list[BatchStudy]:
    """The studies under `root`, sorted by name; InputError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"studies folder {root} does not exist (pass -i with a folder holding one sub-folder per study)")
    skip = Path(out_root).resolve() if out_root is not None else None
    studies = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or d.resolve() == skip:
            continue
        studies.append(BatchStudy(d.name, d, d / "dicom" if (d / "dicom").is_dir() else d))
    if not studies:
        raise InputError(f"studies folder {root} holds no study: put each study's DICOM files in a sub-folder of its own")
    return studies


def input_fingerprint(study: BatchStudy) -> str:
    """A hash of the input's file names, sizes and modification times (changes when a file is added, removed or rewritten)."""
    h = hashlib.sha256()
    for p in sorted(q for q in study.input_dir.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(study.input_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
