"""Build the :class:`~nstage.ingest.study.Study` from what MONAI Deploy's DICOM loader and selector produced.

The app (app.py) loads a study with the SDK's ``DICOMDataLoaderOperator`` and filters its series
with ``DICOMSeriesSelectorOperator`` driven by config/series_selection.json. This module turns
their objects into the same study that :func:`nstage.ingest.study.load_study` builds from a folder:

1. every image instance the loader read becomes an :class:`~nstage.ingest.dicom_index.Instance` (its
   file path, which pydicom keeps as ``Dataset.filename``, and its header), grouped into
   :class:`~nstage.ingest.dicom_index.SeriesEntry` objects in the order :func:`nstage.ingest.dicom_index.index_folder`
   would list them (sorted walk of the folder), so "first instance" means the same file;
2. the SDK selector's matches (all of them: ``all_matched=True``) are the candidates, with the
   enhanced multi-frame series that meet the conditions in their functional groups, which the
   SDK's selector does not read (:func:`with_enhanced`); the
   project preferences the SDK rule format cannot express (attenuation-corrected PET, coverage,
   slice spacing, one study and frame of reference) come from :func:`nstage.ingest.series_selection.select_ct_pet`;
3. the CT and the PET are read by :mod:`nstage.ingest.volumes` and :mod:`nstage.ingest.study` (never by the
   SDK's DICOMSeriesToVolumeOperator, which takes its dtype from the first slice and wraps PET values).

The SDK objects are used by duck typing (the small protocols below), so this module imports
neither holoscan nor monai.deploy.

Known difference from ``nstage run``: the SDK loader drops all but one instance at a repeated
ImagePositionPatient (keeping the higher AcquisitionNumber) before this module sees the series,
whereas ``nstage run`` keeps a pixel-identical copy once and refuses two different images at one
position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset

from nstage.errors import InputError
from nstage.ingest.dicom_index import DicomIndex, Instance, SeriesEntry, image_instances
from nstage.ingest.dicom_values import BadValue, text
from nstage.ingest.series_selection import (
    Selection,
    load_rules,
    matching,
    select_ct_pet,
)
from nstage.ingest.study import Study, study_from_selection

log = logging.getLogger("nstage.ingest.study_from_series")

SELECTIONS = ("CT", "PET")  # selection names in config/series_selection.json


class SdkSopInstance(Protocol):
    def get_native_sop_instance(self) -> Dataset: ...


class SdkSeries(Protocol):
    def get_sop_instances(self) -> Sequence[SdkSopInstance]: ...


class SdkStudy(Protocol):
    def get_all_series(self) -> Sequence[SdkSeries]: ...


class SdkSelectedSeries(Protocol):
    @property
    def series(self) -> SdkSeries: ...


class SdkStudySelection(Protocol):
    @property
    def series_by_selection_name(self) -> Mapping[str, Sequence[SdkSelectedSeries]]: ...


def _walk_key(path: Path, root: Path) -> tuple[tuple[int, str], ...]:
    """Sort key giving the order of :func:`nstage.ingest.dicom_index._walk` (files of a folder before its
    sub-folders, names sorted)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


def _image_instances(ds: Dataset) -> tuple[Instance, ...]:
    """The slices of an image file the loader read (each frame of an enhanced object); none for
    non-images and files without a path."""
    filename = getattr(ds, "filename", None)
    if not isinstance(filename, (str, Path)) or not filename:
        return ()
    if "Rows" not in ds or "Columns" not in ds or any(text(ds, k) is None for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        return ()
    try:
        return image_instances(Path(filename), ds)
    except BadValue as e:
        raise InputError(f"{Path(filename).name}: enhanced multi-frame object: {e}; export the series again") from None


def index_from_sdk(root: str | Path, studies: Iterable[SdkStudy]) -> DicomIndex:
    """The image series the SDK loader read, as :func:`nstage.ingest.dicom_index.index_folder` lists them."""
    root = Path(root)
    groups: dict[tuple[str, str], list[Instance]] = {}
    for study in studies:
        for series in study.get_all_series():
            for sop in series.get_sop_instances():
                for inst in _image_instances(sop.get_native_sop_instance()):
                    key = (str(text(inst.header, "StudyInstanceUID")), str(text(inst.header, "SeriesInstanceUID")))
                    groups.setdefault(key, []).append(inst)
    entries = []
    for (study_uid, series_uid), items in groups.items():
        items.sort(key=lambda i: (_walk_key(i.path, root), i.frame or 0))
        entries.append(SeriesEntry(study_uid, series_uid, tuple(items)))
    entries.sort(key=lambda s: _walk_key(s.instances[0].path, root))
    return DicomIndex(root=root, series=tuple(entries))


def selected_uids(selections: Iterable[SdkStudySelection]) -> dict[str, set[str]]:
    """Series Instance UIDs the SDK selector matched, per selection name ("CT", "PET")."""
    out: dict[str, set[str]] = {name: set() for name in SELECTIONS}
    for study in selections:
        for name, items in study.series_by_selection_name.items():
            for item in items:
                sops = item.series.get_sop_instances()
                if sops:
                    out.setdefault(name, set()).add(str(sops[0].get_native_sop_instance().SeriesInstanceUID))
    return out


def disagreements(index: DicomIndex, chosen: Mapping[str, set[str]], rules: dict[str, Any] | None = None) -> list[str]:
    """Where the SDK's matches differ from :func:`nstage.ingest.series_selection.matching` on the same rules."""
    found = []
    for name in SELECTIONS:
        ours = {s.series_uid for s in matching(index, name, rules)}
        sdk = set(chosen.get(name, set()))
        if ours != sdk:
            found.append(f"{name}: SDK only {sorted(sdk - ours)}, nstage only {sorted(ours - sdk)}")
    return found


def with_enhanced(index: DicomIndex, chosen: Mapping[str, set[str]], rules: dict[str, Any] | None = None) -> dict[str, set[str]]:
    """The SDK's matches plus the enhanced multi-frame series that meet the same conditions: the SDK's
    selector reads top-level attributes only, and an enhanced object keeps some of them (such as
    ImageOrientationPatient) in its functional groups."""
    out = {name: set(uids) for name, uids in chosen.items()}
    for name in SELECTIONS:
        for s in matching(index, name, rules):
            if s.instances[0].frame is not None and s.series_uid not in out.setdefault(name, set()):
                log.info("%s: enhanced multi-frame series meets the %s conditions in its functional groups: a candidate", s.label, name)
                out[name].add(s.series_uid)
    return out


def select_from_sdk(root: str | Path, studies: Sequence[SdkStudy], selections: Sequence[SdkStudySelection],
                    rules: dict[str, Any] | None = None) -> Selection:
    """The CT and PET to use: the SDK's candidates ranked by the project preferences."""
    rules = rules or load_rules()
    index = index_from_sdk(root, studies)
    if not index.series:
        raise InputError(f"no DICOM image files in {index.root}; give the folder that holds the study's CT and PET")
    chosen = with_enhanced(index, selected_uids(selections), rules)
    for problem in disagreements(index, chosen, rules):
        log.warning("series selection differs between MONAI Deploy's selector and nstage.ingest.series_selection (%s); "
                    "the SDK's candidates are used", problem)
    wanted = set().union(*(chosen.get(name, set()) for name in SELECTIONS))
    candidates = DicomIndex(root=index.root, series=tuple(s for s in index.series if s.series_uid in wanted))
    if not all(chosen.get(name) for name in SELECTIONS):
        select_ct_pet(index, rules)  # raises the message that names what the folder holds
    return select_ct_pet(candidates, rules)


def study_from_sdk(root: str | Path, studies: Sequence[SdkStudy], selections: Sequence[SdkStudySelection],
                   suv_type: str = "bw") -> Study:
    """The study of the SDK loader's and selector's output (see the module docstring)."""
    return study_from_selection(select_from_sdk(root, studies, selections), suv_type)
