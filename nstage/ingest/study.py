"""Load a PET/CT study folder: the CT in HU and the PET in SUV, on their own LPS grids.

``load_study(path)`` indexes the folder (:mod:`nstage.ingest.dicom_index`), selects the CT and the
attenuation-corrected PET of one study and frame of reference (:mod:`nstage.ingest.series_selection`),
builds both volumes with their geometry checks (:mod:`nstage.ingest.volumes`) and converts the PET to
SUV (:mod:`nstage.ingest.suv`). ``Study.pet_on_ct_grid()`` resamples the SUV into the CT's physical
space through :func:`nstage.geometry.resample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nstage.errors import InputError
from nstage.geometry import resample
from nstage.ingest.dicom_index import DicomIndex, SeriesEntry, index_folder
from nstage.ingest.series_selection import (
    Selection,
    select_ct,
    select_ct_pet,
    select_pet,
)
from nstage.ingest.suv import SuvInfo, suv_factors
from nstage.ingest.volumes import Volume, load_volume, read_rescaled, stack_series

__all__ = ["PetVolume", "Study", "Volume", "index_study", "load_ct_volume", "load_pet_series", "load_pet_volume", "load_study"]


@dataclass(frozen=True)
class PetVolume(Volume):
    """A PET volume whose ``array`` is SUV (float32), with how the SUV was derived."""

    suv: SuvInfo


@dataclass(frozen=True)
class Study:
    """CT (HU) and PET (SUV) of one study and frame of reference."""

    ct: Volume
    pet: PetVolume

    def pet_on_ct_grid(self, order: int = 1) -> np.ndarray:
        """The SUV volume sampled at the CT voxel centres (0 outside the PET field of view)."""
        return resample(self.pet.array, self.pet.grid, self.ct.grid, order=order, fill=0.0).astype(np.float32, copy=False)


def index_study(path: str | Path) -> DicomIndex:
    """Index ``path``; InputError when it holds no image series or damaged DICOM files."""
    index = index_folder(path)
    if index.broken:
        listed = "; ".join(f"{b.path.name}: {b.reason}" for b in index.broken[:3])
        more = f" and {len(index.broken) - 3} more" if len(index.broken) > 3 else ""
        raise InputError(f"{len(index.broken)} damaged DICOM file(s) in {path} ({listed}{more}); "
                         "the export may be incomplete: export the study again or remove those files")
    if not index.series:
        raise InputError(f"no DICOM image files in {path} ({len(index.skipped)} other file(s)); give the folder that holds the study's CT and PET")
    return index


def load_pet_volume(series: SeriesEntry, suv_type: str = "bw") -> PetVolume:
    """The SUV volume of one PET series (per-slice factors applied to the rescaled values)."""
    stack = stack_series(series)
    info = suv_factors(stack.headers, suv_type, label=series.label)
    array = read_rescaled(stack)
    array *= np.asarray(info.scale_factors, dtype=np.float32)[:, None, None]
    return PetVolume(
        array=array,
        grid=stack.grid,
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        frame_of_reference_uid=series.frame_of_reference_uid or "",
        description=series.description,
        suv=info,
        files=tuple(i.path for i in stack.instances),
    )


def load_study(path: str | Path, suv_type: str = "bw") -> Study:
    """CT and SUV PET of the study under ``path``; InputError naming what is missing or wrong."""
    return study_from_selection(select_ct_pet(index_study(path)), suv_type)


def study_from_selection(selection: Selection, suv_type: str = "bw") -> Study:
    """CT (HU) and SUV PET of the chosen series; InputError when they are not of one study and frame of reference."""
    ct = load_volume(selection.ct)
    pet = load_pet_volume(selection.pet, suv_type)
    if (ct.study_uid, ct.frame_of_reference_uid) != (pet.study_uid, pet.frame_of_reference_uid):
        raise InputError(f"{selection.ct.label} and {selection.pet.label} do not share study and frame of reference")
    return Study(ct=ct, pet=pet)


def load_ct_volume(path: str | Path) -> Volume:
    """The CT (HU, float32) from a study folder or a CT series folder (same choice as load_study)."""
    return load_volume(select_ct(index_study(path)))


def load_pet_series(path: str | Path, suv_type: str = "bw") -> PetVolume:
    """The SUV volume of the PET series in ``path`` (a series folder, or a study: best PET)."""
    return load_pet_volume(select_pet(index_study(path)), suv_type)
