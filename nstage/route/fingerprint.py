"""Fingerprint of a study version: its SOP Instance UIDs and the bytes of each instance.

A study re-sent unchanged has the same fingerprint (and is not processed again); one instance
added, removed or altered gives another fingerprint. The instances digest names only which
instances a version holds (by Orthanc ID), so it can be read without downloading them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(instances: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (SOP Instance UID, content hash) pairs; order of arrival does not matter."""
    h = hashlib.sha256()
    for uid, digest in sorted(set(instances)):
        h.update(f"{uid}\t{digest}\n".encode())
    return h.hexdigest()


def folder_fingerprint(files: Iterable[tuple[str, Path]]) -> str:
    """Fingerprint of (SOP Instance UID, file) pairs."""
    return fingerprint((uid, file_sha256(p)) for uid, p in files)


def instances_digest(orthanc_ids: Iterable[str]) -> str:
    """sha256 over the sorted Orthanc instance IDs of a study version: which instances it holds (not their
    bytes), read from Orthanc without downloading; the start-up scan compares it with the jobs' digests."""
    h = hashlib.sha256()
    for i in sorted(set(orthanc_ids)):
        h.update(f"{i}\n".encode())
    return h.hexdigest()
