"""Folders of the work area and the atomic moves between them.

WORK/inputs/<study key>-<fingerprint>/   one study version as downloaded from the node's Orthanc
                                         (+ instances.json); named by the queue's unique key, so
                                         a crash between download and enqueue loses nothing
WORK/jobs/<id>/run.tmp/                  the output folder of the pipeline run in progress
WORK/jobs/<id>/output/                   a finished run's outputs, fsynced and renamed into place
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTANCES_FILE = "instances.json"  # in input/: the Orthanc instance ids and SOP Instance UIDs


def job_dir(jobs: Path, job_id: int) -> Path:
    return Path(jobs) / f"{job_id:06d}"


def input_dir(work: Path, study_key: str, fingerprint: str) -> Path:
    return Path(work) / "inputs" / f"{study_key}-{fingerprint[:16]}"


def run_dir(jobs: Path, job_id: int) -> Path:
    return job_dir(jobs, job_id) / "run.tmp"


def output_dir(jobs: Path, job_id: int) -> Path:
    return job_dir(jobs, job_id) / "output"


def fsync_tree(folder: Path) -> None:
    """Flush every file of a folder and the folder itself to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(src: Path, dest: Path) -> None:
    """Flush `src`, then rename it to `dest` (which must not exist) and flush the parent."""
    fsync_tree(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dest)
    fsync_dir(dest.parent)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
