"""Find the DICOM image series under a folder: any file names, any depth, DICOMDIR or not.

Only headers are read (``stop_before_pixels``). Each file ends up in exactly one of three
places:

- an image instance of a series (it has Rows and Columns): grouped by StudyInstanceUID and
  SeriesInstanceUID in :class:`SeriesEntry`; an enhanced multi-frame object gives one instance
  per frame (:func:`image_instances`);
- ``skipped``: not DICOM at all, or a DICOM object that is no image (DICOMDIR, SR, KO, PR,
  RT structure sets, ...); a DICOMDIR is not needed because the walk finds every file it names;
- ``broken``: a DICOM file whose header cannot be read, an image whose header lacks Rows,
  Columns or the UIDs that place it in a series, or an image file that ends before its pixel
  data is complete (checked from the file size for uncompressed transfer syntaxes; a deflated
  file is checked when its pixels are decoded). Callers
  decide whether that is fatal.

An instance seen twice (the same SOPInstanceUID in two files: a copied file) is kept once.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from nstage.errors import InputError
from nstage.ingest.dicom_values import BadValue, text
from nstage.ingest.multiframe import frame_headers, has_functional_groups

log = logging.getLogger("nstage.ingest.dicom_index")

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class Instance:
    """One image slice: its file, its header (no pixel data) and, for a frame of an enhanced
    multi-frame object, the frame's index in that file (its header then holds the frame's own
    attributes, see :mod:`nstage.ingest.multiframe`)."""

    path: Path
    header: Dataset
    frame: int | None = None

    @property
    def name(self) -> str:
        """How messages name the slice: the file name, and the frame when there is one."""
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"


def image_instances(path: Path, header: Dataset) -> tuple[Instance, ...]:
    """The slices of one image file: itself, or each frame of an enhanced multi-frame object.

    A multi-frame file without per-frame functional groups stays one instance (the volume reader
    refuses it with its reason); BadValue when the functional groups do not add up."""
    if not has_functional_groups(header):
        return (Instance(path, header),)
    return tuple(Instance(path, h, k) for k, h in enumerate(frame_headers(header)))


@dataclass(frozen=True)
class SeriesEntry:
    """All image instances of one series found under the folder, in file-walk order."""

    study_uid: str
    series_uid: str
    instances: tuple[Instance, ...]

    @property
    def first(self) -> Dataset:
        """Header of the first instance (series- and study-level attributes)."""
        return self.instances[0].header

    @property
    def headers(self) -> tuple[Dataset, ...]:
        return tuple(i.header for i in self.instances)

    @property
    def modality(self) -> str:
        return (text(self.first, "Modality") or "").upper()

    @property
    def description(self) -> str:
        return text(self.first, "SeriesDescription") or ""

    @property
    def frame_of_reference_uid(self) -> str | None:
        return text(self.first, "FrameOfReferenceUID")

    @property
    def label(self) -> str:
        """How messages name the series: number, description and UID (no patient data)."""
        number = text(self.first, "SeriesNumber")
        desc = self.description
        parts = [f"series {number}" if number else "series", f'"{desc}"' if desc else "", f"({self.modality}, {self.series_uid})"]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class SkippedFile:
    """A file that is not part of any image series, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class DicomIndex:
    """The image series under ``root`` plus the files that were left out."""

    root: Path
    series: tuple[SeriesEntry, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())
    broken: tuple[SkippedFile, ...] = field(default=())

    def studies(self) -> dict[str, list[SeriesEntry]]:
        """Series grouped by StudyInstanceUID (order of first appearance)."""
        out: dict[str, list[SeriesEntry]] = {}
        for s in self.series:
            out.setdefault(s.study_uid, []).append(s)
        return out

    def by_modality(self, modality: str) -> list[SeriesEntry]:
        return [s for s in self.series if s.modality == modality.upper()]

    def summary(self) -> str:
        """One line for messages: what was found."""
        found = ", ".join(s.label for s in self.series) or "no image series"
        return f"{len(self.series)} image series ({found}); {len(self.skipped)} other file(s), {len(self.broken)} unreadable"


def _walk(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` in a stable (sorted) order; hidden files included."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sop_class(ds: Dataset) -> str | None:
    return text(ds, "SOPClassUID") or text(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")


def _is_image_class(sop_class: str | None) -> bool:
    return bool(sop_class) and "Image Storage" in UID(str(sop_class)).name


def _truncation(path: Path, ds: Dataset, header_end: int) -> str | None:
    """Why an image file is incomplete: it ends before its pixel data, or (uncompressed) the
    pixel data is shorter than Rows x Columns x frames x samples x bytes per sample."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and UID(str(ts)).is_deflated:
        return None  # the offsets are in the inflated stream: the decoder finds a short file
    size = path.stat().st_size
    if header_end >= size:
        return "file ends before its pixel data (truncated)"
    if ts is None or UID(str(ts)).is_compressed:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.get("BitsAllocated", 16))
        frames = int(str(ds.get("NumberOfFrames", 1) or 1))
        samples = int(ds.get("SamplesPerPixel", 1))
    except (TypeError, ValueError):
        return None
    expected = (rows * cols * frames * samples * bits + 7) // 8
    available = size - header_end - 8  # the PixelData element header takes 8 or 12 bytes
    if available < expected:
        return f"pixel data truncated ({max(available, 0)} of {expected} bytes)"
    return None


def read_header(path: Path) -> tuple[Dataset, int] | None | str:
    """(header, offset where it ends) of ``path``; None when it is not DICOM; a string (the
    reason) when it claims to be DICOM but cannot be read."""
    claims_dicom = _has_preamble(path)
    try:
        with open(path, "rb") as f:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=not claims_dicom)
            end = f.tell()
        sop_class = _sop_class(ds)
    except InvalidDicomError:
        return None
    except Exception as e:  # damaged files raise anything from EOFError to struct.error
        return f"header unreadable ({type(e).__name__}: {str(e)[:120]})" if claims_dicom else None
    if not claims_dicom and not sop_class:
        return None  # 'force' parses any bytes; without a SOP class it was not a DICOM object
    return ds, end


def _classify(path: Path, ds: Dataset, header_end: int) -> Instance | SkippedFile | str:
    """Instance for an image, SkippedFile for a non-image object, a reason for a damaged file."""
    sop_class = _sop_class(ds)
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        return SkippedFile(path, "DICOMDIR (files are found by walking the folder)")
    try:
        image = "Rows" in ds and "Columns" in ds
        if not image and not _is_image_class(sop_class):
            return SkippedFile(path, f"not an image (SOP class {sop_class}, modality {text(ds, 'Modality')})")
        if not image or any(text(ds, k) is None for k in _REQUIRED_UIDS):
            return "header incomplete (no Rows/Columns or Study/Series/SOP Instance UID): damaged or truncated file"
        return _truncation(path, ds, header_end) or Instance(path, ds)
    except Exception as e:
        return f"header unreadable ({type(e).__name__}: {str(e)[:120]})"


def index_folder(root: str | Path) -> DicomIndex:
    """Read the headers of every file under ``root`` (a folder, or a single file)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist: give the folder that holds the DICOM files")
    paths = [root] if root.is_file() else list(_walk(root))
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    seen: set[str] = set()
    skipped: list[SkippedFile] = []
    broken: list[SkippedFile] = []
    for path in paths:
        got = read_header(path)
        if got is None:
            skipped.append(SkippedFile(path, "not a DICOM file"))
            continue
        if isinstance(got, str):
            broken.append(SkippedFile(path, got))
            continue
        item = _classify(path, *got)
        if isinstance(item, str):
            broken.append(SkippedFile(path, item))
        elif isinstance(item, SkippedFile):
            skipped.append(item)
        else:
            uid = str(text(item.header, "SOPInstanceUID"))
            if uid in seen:
                log.info("%s: same SOP instance as an earlier file, kept once", path.name)
                continue
            seen.add(uid)
            try:
                slices = image_instances(item.path, item.header)
            except BadValue as e:
                broken.append(SkippedFile(path, f"enhanced multi-frame object: {e}"))
                continue
            groups[(str(text(item.header, "StudyInstanceUID")), str(text(item.header, "SeriesInstanceUID")))].extend(slices)
    series = tuple(SeriesEntry(study, uid, tuple(items)) for (study, uid), items in groups.items())
    for b in broken:
        log.warning("unreadable DICOM file %s: %s", b.path.relative_to(root) if root.is_dir() else b.path.name, b.reason)
    log.debug("indexed %s: %d series, %d skipped, %d broken", root, len(series), len(skipped), len(broken))
    return DicomIndex(root=root, series=series, skipped=tuple(skipped), broken=tuple(broken))
