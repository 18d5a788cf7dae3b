"""Atlas-to-patient registration with Elastix, and the station map it carries to the patient's CT grid.

Per atlas (fixed image = patient, moving = atlas CT):
1. both CTs are copied to an axis-aligned working grid (`working_spacing_mm`); landmarks are found
   by thresholding (body, lungs, trachea, carina; nstage/stationmap/thorax_landmarks.py);
2. pre-alignment (nstage/stationmap/prealignment.py): carina onto carina, x and y scaled by the lungs'
   width and depth, z mapped through lung base, carina and apex (robust to field of view, table
   position and proportions), and a thorax crop of the patient around the lungs;
3. the registration backend (`backend` in config/registration.json, `--registration`): Elastix (CPU;
   affine, then B-spline, multi-resolution, parameter files in atlas/elastix/) or the PyTorch backend
   (nstage/stationmap/registration_torch.py; the same stages, on a GPU when there is one), its metric
   computed in the patient's thorax (lung hulls and neck; no arms, shoulders or table) where the
   atlas has data;
4. the displacement field (patient working grid) composed with the pre-alignment gives, for every
   patient point, its atlas point; station labels are read there on the patient's CT grid
   (nstage/stationmap/label_transfer.py) and kept only in tissue (not air or lung);
5. quality figures and the status (nstage/stationmap/registration_quality.py).
With several atlases the per-atlas maps that did not fail are fused by majority vote. A failed
result carries no station map.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nstage.errors import InputError
from nstage.geometry import Grid
from nstage.progress import StageTimer
from nstage.stationmap.atlas import AtlasImage
from nstage.stationmap.elastix_program import program_version, register_with_programs
from nstage.stationmap.itk_bridge import (
    from_itk,
    itk_module,
    read_parameter_files,
    to_itk,
)
from nstage.stationmap.label_fusion import majority_vote
from nstage.stationmap.label_transfer import LabelSource, sample_at, transfer_labels
from nstage.stationmap.prealignment import PreAlignment, prealign
from nstage.stationmap.registration_quality import (
    Grade,
    dice,
    dilate_mm,
    grade,
    jacobian_determinant,
    ncc,
    order_violations,
)
from nstage.stationmap.registration_settings import (
    RegistrationSettings,
    elastix_folder,
    load_settings,
    resolve_backend,
    resolve_runner,
)
from nstage.stationmap.thorax_landmarks import (
    LandmarkSettings,
    ThoraxLandmarks,
    find_landmarks,
    thorax_mask,
)
from nstage.stationmap.working_grid import crop, working_copy
from nstage.stations import load_stations, present_labels

LANDMARK_FIGURES = {"lung_volume_ml", "trachea_length_mm", "carina_height", "trachea_top_height", "carina_offset_mm",
                    "heart_offset_mm", "spine_offset_mm"}


STATION_FIGURES = {"stations_missing", "order_violations", "station_air_fraction"}


Backend = Callable[[np.ndarray, np.ndarray, Grid, np.ndarray, Path, RegistrationSettings], np.ndarray]


@dataclass
class AtlasResult:
    """The outcome of registering one atlas to the patient."""

    name: str
    grade: Grade
    figures: dict[str, Any]
    labels: np.ndarray | None  # uint8 on the patient CT grid; None when failed
    seconds: float
    regions: dict[str, tuple[np.ndarray, Grid]] = field(default_factory=dict)  # atlas reference regions (bool) on the working grid
    backend: str = "elastix"

    def as_dict(self) -> dict[str, Any]:
        return {"atlas": self.name, "status": self.grade.status, "reasons": list(self.grade.reasons),
                "figures": self.figures, "seconds": round(self.seconds, 2), "backend": self.backend}


@dataclass
class StationResult:
    """Stations on the patient's CT grid (None when failed) with the registration's quality."""

    grid: Grid
    labels: np.ndarray | None
    grade: Grade
    landmarks: dict[str, Any]
    atlases: list[AtlasResult] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    regions: dict[str, tuple[np.ndarray, Grid]] = field(default_factory=dict)  # e.g. "blood_pool", from the best atlas
    backend: dict[str, Any] = field(default_factory=dict)  # which registration ran: name, asked for, device, libraries
    lungs: tuple[np.ndarray, Grid] | None = None  # the patient's lungs as the landmark finder saw them (working grid)

    @property
    def status(self) -> str:
        return self.grade.status

    def figures(self) -> dict[str, Any]:
        """Landmark figures and those of the best-scoring atlas (the first one in the fusion)."""
        out = dict(self.landmarks)
        usable = [a for a in self.atlases if a.labels is not None] or self.atlases
        if usable:
            out.update(max(usable, key=lambda a: a.figures.get("ncc_mediastinum") or 0.0).figures)
        return out

    def report(self) -> dict[str, Any]:
        """The JSON of `registration.json`."""
        present = present_labels(self.labels) if self.labels is not None else []
        names = {s.label: s.station for s in load_stations()}
        return {
            "status": self.grade.status,
            "reasons": list(self.grade.reasons),
            "figures": self.figures(),
            "stations_found": [names.get(v, str(v)) for v in present],
            "stations_missing": [s for v, s in names.items() if v not in present] if self.labels is not None else list(names.values()),
            "fusion": "majority vote" if len([a for a in self.atlases if a.labels is not None]) > 1 else "single atlas",
            "landmarks": self.landmarks,
            "atlases": [a.as_dict() for a in self.atlases],
            "backend": dict(self.backend),
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }


@dataclass(frozen=True)
class PreparedAtlas:
    """An atlas with its landmarks and its labels ready for transfer (computed once per process)."""

    atlas: AtlasImage
    landmarks: ThoraxLandmarks
    labels: LabelSource


_PREPARED: dict[tuple[int, float, LandmarkSettings], tuple[AtlasImage, PreparedAtlas]] = {}


def prepare_atlas(atlas: AtlasImage, settings: RegistrationSettings) -> PreparedAtlas:
    """Landmarks and label indicators of an atlas (computed once per atlas and settings in a process)."""
    key = (id(atlas), settings.working_spacing_mm, settings.landmarks)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is atlas:
        return hit[1]
    prepared = _prepare(atlas, settings)
    if len(_PREPARED) >= 8:
        _PREPARED.clear()
    _PREPARED[key] = (atlas, prepared)
    return prepared


def _prepare(atlas: AtlasImage, settings: RegistrationSettings) -> PreparedAtlas:
    work, work_grid = working_copy(atlas.ct, atlas.ct_grid, settings.working_spacing_mm)
    lm = find_landmarks(work, work_grid, settings.landmarks)
    if lm.carina is None or lm.lung_lo is None:
        raise InputError(f"atlas {atlas.name} ({atlas.source}): no carina or lungs found in its CT; give a chest CT in HU")
    return PreparedAtlas(atlas, lm, LabelSource.from_labels(atlas.labels, atlas.label_grid))


def map_stations(hu: np.ndarray, grid: Grid, atlases: list[AtlasImage], settings: RegistrationSettings | None = None,
                 timer: StageTimer | None = None, elastix_dir: Path | None = None, backend: str | None = None,
                 run: Backend | None = None) -> StationResult:
    """Register the atlases to a patient CT (HU, ``[k, j, i]`` on `grid`) and carry their stations over.

    `backend`: elastix | torch | auto (None: the settings' `backend`); `run`: see :func:`register_one`.
    """
    settings = settings or load_settings()
    timer = timer or StageTimer()
    if not atlases:
        raise ValueError("map_stations needs at least one atlas")
    asked = backend or settings.backend
    chosen = resolve_backend(asked)
    with timer.stage("patient landmarks"):
        work, work_grid = working_copy(np.asarray(hu, np.float32), grid, settings.working_spacing_mm)
        lm = find_landmarks(work, work_grid, settings.landmarks)
    figures = lm.figures()
    g = grade(figures, settings.rules, only=LANDMARK_FIGURES)
    result = StationResult(grid, None, g, figures, timings_s=timer.timings, backend=backend_record(chosen, asked, settings),
                           lungs=(lm.lungs, work_grid))
    if g.status == "failed":
        return result
    results: list[AtlasResult] = []
    for atlas in atlases:
        with timer.stage(f"atlas {atlas.name}: landmarks"):
            prepared = prepare_atlas(atlas, settings)
        results.append(register_one(hu, grid, work, work_grid, lm, prepared, settings, elastix_dir, timer, chosen, run))
    result.atlases = results
    usable = sorted((r for r in results if r.labels is not None), key=lambda r: -(r.figures.get("ncc_mediastinum") or 0.0))
    if not usable:
        result.grade.add("failed", "no atlas registered acceptably")
        for r in results:
            result.grade.merge(r.grade)
        return result
    with timer.stage("label fusion"):
        result.labels = majority_vote([r.labels for r in usable])  # type: ignore[misc]
    for r in usable:
        result.grade.merge(r.grade)
    result.regions = dict(usable[0].regions)
    dropped = [r.name for r in results if r.labels is None]
    if dropped:
        result.grade.add("suspect", f"atlas(es) {', '.join(dropped)} failed and were left out of the fusion")
    return result


def find_lungs(hu: np.ndarray, grid: Grid, settings: RegistrationSettings | None = None) -> tuple[np.ndarray, Grid]:
    """The patient's lungs found as :func:`map_stations` finds them (for callers that did not register)."""
    settings = settings or load_settings()
    work, work_grid = working_copy(np.asarray(hu, np.float32), grid, settings.working_spacing_mm)
    return find_landmarks(work, work_grid, settings.landmarks).lungs, work_grid


def backend_record(chosen: str, asked: str, settings: RegistrationSettings) -> dict[str, Any]:
    """registration.json's `backend`: the one that ran, the one asked for; for Elastix how it ran (its programs or ITK's
    module) and which version; for torch its device and libraries."""
    out: dict[str, Any] = {"name": chosen, "requested": asked}
    if chosen == "elastix":
        runner = resolve_runner(settings.elastix_runner)
        out.update(runner=runner, version=f"elastix {program_version()}" if runner == "program" else f"itk-elastix {_module_version('itk-elastix')}")
    if chosen == "torch":
        from nstage.stationmap.registration_torch import library_versions, torch_device

        out.update(device=torch_device(settings.torch.device), metric=settings.torch.metric, seed=settings.torch.seed, **library_versions())
    return out


def _module_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def register_one(hu: np.ndarray, grid: Grid, work: np.ndarray, work_grid: Grid, lm: ThoraxLandmarks, atlas: PreparedAtlas,
                 settings: RegistrationSettings, elastix_dir: Path | None = None, timer: StageTimer | None = None,
                 backend: str = "elastix", run: Backend | None = None) -> AtlasResult:
    """Register one prepared atlas to the patient with `backend` (elastix | torch); grade it; carry its labels over unless it failed.

    `run`: a function with :func:`run_elastix`'s arguments and result used instead of the named backend's
    (benchmarks that record its inputs, or replay a displacement field computed on another machine).
    """
    t0 = time.perf_counter()
    timer = timer or StageTimer()
    name = atlas.atlas.name
    with timer.stage(f"atlas {name}: pre-alignment"):
        fixed, fixed_grid, mask, lungs, pre, moving = _prepare_pair(work, work_grid, lm, atlas, settings)
    lo, hi = settings.window_hu
    folder = elastix_dir or elastix_folder(Path(atlas.atlas.source))
    run = run or (run_torch if backend == "torch" else run_elastix)
    with timer.stage(f"atlas {name}: {backend}"):
        displacement = run(np.clip(fixed, lo, hi), np.clip(moving, lo, hi), fixed_grid, mask, folder, settings)
    with timer.stage(f"atlas {name}: quality"):
        mapping = pre.apply(_points(fixed_grid) + displacement)  # patient point -> atlas point (LPS)
        figures: dict[str, Any] = {"init_scale_min": round(float(pre.raw_scales.min()), 3), "init_scale_max": round(float(pre.raw_scales.max()), 3)}
        figures.update(_quality_figures(fixed, fixed_grid, mask, lungs, mapping, atlas, settings))
    labels: np.ndarray | None = None
    g = grade(figures, settings.rules, only=set(figures) - LANDMARK_FIGURES)
    if g.status != "failed":
        with timer.stage(f"atlas {name}: label transfer"):
            labels, air_fraction = transfer_labels(hu, grid, mapping, fixed_grid, atlas.labels, settings.transfer)
            figures.update(_station_figures(labels, grid, atlas.atlas.labels, air_fraction, settings))
        g.merge(grade(figures, settings.rules, only=STATION_FIGURES))
        if g.status == "failed":
            labels = None
    regions = {} if labels is None else transfer_regions(atlas.atlas, mapping, fixed_grid)
    return AtlasResult(name, g, figures, labels, time.perf_counter() - t0, regions, backend)


def transfer_regions(atlas: AtlasImage, mapping: np.ndarray, grid: Grid) -> dict[str, tuple[np.ndarray, Grid]]:
    """The atlas's reference regions (e.g. blood pool) on the patient working grid, through the same mapping."""
    return {name: (sample_at(mask.view(np.uint8), mask_grid, mapping, order=0, fill=0) > 0, grid)
            for name, (mask, mask_grid) in atlas.regions.items()}


def _prepare_pair(work: np.ndarray, work_grid: Grid, lm: ThoraxLandmarks, atlas: PreparedAtlas, settings: RegistrationSettings
                  ) -> tuple[np.ndarray, Grid, np.ndarray, np.ndarray, PreAlignment, np.ndarray]:
    """Patient thorax crop, metric mask, lungs, pre-alignment and the pre-aligned atlas CT on the crop's grid."""
    fixed, fixed_grid = thorax_crop(work, work_grid, lm, settings.margins)
    mask, _ = thorax_crop(thorax_mask(lm, settings.mask_margin_mm, settings.neck_radius_mm), work_grid, lm, settings.margins)
    lungs, _ = thorax_crop(lm.lungs, work_grid, lm, settings.margins)
    _, _, zs = fixed_grid.axis_coordinates()
    pre = prealign(lm, atlas.landmarks, settings.scale_limits, settings.z_smoothing_mm, (float(zs[0]), float(zs[-1])))
    a = atlas.atlas
    idx = pre.atlas_index_on(fixed_grid, a.ct_grid)
    moving = ndimage.map_coordinates(a.ct, idx, order=1, mode="constant", cval=-1000.0, output=np.float32)
    n = np.array(a.ct.shape, float)[:, None, None, None]
    valid = np.all((idx >= 0) & (idx <= n - 1), axis=0)
    return fixed, fixed_grid, mask & valid, lungs, pre, moving


def _station_figures(labels: np.ndarray, grid: Grid, atlas_labels: np.ndarray, air_fraction: float | None,
                     settings: RegistrationSettings) -> dict[str, Any]:
    """Missing stations, stations out of anatomical order, and how much of them fell on air or lung."""
    names = {s.label: s.station for s in load_stations()}
    present = set(present_labels(labels))
    expected = set(present_labels(atlas_labels))
    problems = order_violations(labels, grid, names, settings.order_above, settings.order_right_of)
    out: dict[str, Any] = {
        "stations_missing": len(expected - present),
        "order_violations": len(problems),
        "station_air_fraction": _round(air_fraction),
    }
    if expected - present:
        out["missing_names"] = sorted(names.get(v, str(v)) for v in expected - present)
    if problems:
        out["order_problems"] = problems
    return out


def thorax_crop(array: np.ndarray, grid: Grid, lm: ThoraxLandmarks, margins: dict[str, float]) -> tuple[np.ndarray, Grid]:
    """The patient's thorax on the working grid: the lungs' box with margins (LPS: -y anterior, +z superior)."""
    assert lm.lung_lo is not None and lm.lung_hi is not None
    lo = lm.lung_lo - np.array([margins["lateral"], margins["anterior"], margins["inferior"]])
    hi = lm.lung_hi + np.array([margins["lateral"], margins["posterior"], margins["superior"]])
    return crop(array, grid, lo, hi)


def _points(grid: Grid) -> np.ndarray:
    """LPS position of every voxel of an axis-aligned grid, ``[k, j, i, 3]``."""
    xs, ys, zs = grid.axis_coordinates()
    out = np.empty(grid.shape + (3,), np.float64)
    out[..., 0] = xs[None, None, :]
    out[..., 1] = ys[None, :, None]
    out[..., 2] = zs[:, None, None]
    return out


def _multi_metric(parameter_files: list[Path]) -> bool:
    """Whether any of the Elastix parameter files registers with several metrics (`MultiMetric...` registration)."""
    return any(line.startswith("(Registration ") and "MultiMetric" in line
               for f in parameter_files if f.is_file() for line in f.read_text().splitlines())


def run_elastix(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, folder: Path,
                settings: RegistrationSettings) -> np.ndarray:
    """Elastix with the parameter files of `folder`; the displacement field ``[k, j, i, 3]`` (mm) on `grid`.

    Run as the settings' `elastix_runner` says: its programs (no ITK to load in this process) or ITK's module."""
    files = [folder / f for f in settings.parameter_files]
    threads = settings.threads or (os.cpu_count() or 1)
    if _multi_metric(files):
        threads = 1  # itk-elastix crashes on multi-metric registrations with several threads (ITKElastix #160)
    if resolve_runner(settings.elastix_runner) == "program":
        return register_with_programs(fixed, moving, grid, mask, files, threads)
    itk = itk_module()
    params = read_parameter_files(files)
    fixed_image = to_itk(fixed, grid)
    with tempfile.TemporaryDirectory(prefix="nstage-elastix-") as scratch:  # transformix writes files: keep them out of the CWD
        _, transform = itk.elastix_registration_method(
            fixed_image, to_itk(moving, grid), parameter_object=params, fixed_mask=to_itk(mask.astype(np.uint8), grid, np.uint8),
            log_to_console=False, number_of_threads=threads, output_directory=scratch,
        )
        field_image = itk.transformix_deformation_field(fixed_image, transform, output_directory=scratch)
        field, _ = from_itk(field_image)
    return field.astype(np.float64)


def run_torch(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, folder: Path,
              settings: RegistrationSettings) -> np.ndarray:
    """The PyTorch backend (settings' `torch`), same arguments and result as :func:`run_elastix` (`folder` unused)."""
    from nstage.stationmap.registration_torch import run_torch as register

    return register(fixed, moving, grid, mask, settings.torch, settings.window_hu, settings.threads)


def _quality_figures(fixed: np.ndarray, fixed_grid: Grid, mask: np.ndarray, lungs: np.ndarray, mapping: np.ndarray,
                     atlas: PreparedAtlas, settings: RegistrationSettings) -> dict[str, Any]:
    """Similarity, lung overlap, folding and station region of one registration, on the working grid."""
    a = atlas.atlas
    lo, hi = settings.window_hu
    warped = np.clip(sample_at(a.ct, a.ct_grid, mapping, order=1, fill=-1000.0), lo, hi)
    lm = atlas.landmarks
    atlas_lungs = sample_at(lm.lungs.astype(np.uint8), lm.grid, mapping, order=0, fill=0) > 0
    stations = sample_at(a.labels, a.label_grid, mapping, order=0, fill=0) > 0
    region = dilate_mm(stations, fixed_grid.spacing, settings.transfer.region_margin_mm) & mask
    jacobian = jacobian_determinant(mapping, fixed_grid.spacing)
    det, det_stations = jacobian[mask], jacobian[region]
    clipped = np.clip(fixed, lo, hi)
    return {
        "ncc_thorax": _round(ncc(clipped, warped, mask)),
        "ncc_mediastinum": _round(ncc(clipped, warped, region)),
        "lung_dice": _round(dice(lungs & mask, atlas_lungs & mask)),
        "jacobian_min": _round(float(det.min()) if det.size else None),
        "folded_fraction": _round(float((det <= 0).mean()) if det.size else None, 5),
        "folded_fraction_stations": _round(float((det_stations <= 0).mean()) if det_stations.size else None, 5),
    }


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)
