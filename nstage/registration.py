"""Atlas-to-patient registration with Elastix, and the station map it carries to the patient's CT grid.

Per atlas (fixed image = patient, moving = atlas CT):
1. both CTs are copied to an axis-aligned working grid (`working_spacing_mm`); landmarks are found
   by thresholding (body, lungs, trachea, carina; nstage/thorax_landmarks.py);
2. pre-alignment (nstage/prealignment.py): carina onto carina, x and y scaled by the lungs'
   width and depth, z mapped through lung base, carina and apex (robust to field of view, table
   position and proportions), and a thorax crop of the patient around the lungs;
3. Elastix: affine, then B-spline, multi-resolution (parameter files in atlas/elastix/), metric
   sampled inside the patient's body where the atlas has data;
4. the displacement field (patient working grid) composed with the pre-alignment gives, for every
   patient point, its atlas point; station labels are read there on the patient's CT grid with
   per-label linear interpolation and argmax near label borders, nearest label elsewhere, and kept
   only in tissue (not air or lung);
5. quality figures and the status (nstage/registration_quality.py).
With several atlases the per-atlas maps that did not fail are fused by majority vote. A failed
result carries no station map.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nstage import paths
from nstage.atlas import AtlasImage
from nstage.geometry import Grid
from nstage.itk_bridge import from_itk, itk_module, read_parameter_files, to_itk
from nstage.label_fusion import majority_vote
from nstage.prealignment import prealign
from nstage.progress import StageTimer
from nstage.registration_quality import Grade, dice, dilate_mm, grade, jacobian_determinant, ncc, order_violations
from nstage.stations import load_stations
from nstage.thorax_landmarks import LandmarkSettings, ThoraxLandmarks, find_landmarks, thorax_mask
from nstage.working_grid import crop, working_copy

log = logging.getLogger("nstage")

LANDMARK_FIGURES = {"lung_volume_ml", "trachea_length_mm", "carina_height", "trachea_top_height", "carina_offset_mm",
                    "heart_offset_mm", "spine_offset_mm"}
STATION_FIGURES = {"stations_missing", "order_violations", "station_air_fraction"}


@dataclass(frozen=True)
class RegistrationSettings:
    """What `config/registration.json` holds."""

    working_spacing_mm: float
    window_hu: tuple[float, float]
    threads: int
    parameter_files: tuple[str, ...]
    margins: dict[str, float]
    mask_margin_mm: float
    neck_radius_mm: float
    scale_limits: tuple[float, float]
    z_smoothing_mm: float
    landmarks: LandmarkSettings
    min_tissue_hu: float
    region_margin_mm: float
    order_above: list[list[str]]
    order_right_of: list[list[str]]
    rules: dict[str, dict[str, Any]]


def load_settings(path: Path | None = None) -> RegistrationSettings:
    """Read the registration settings (default: `config/registration.json`)."""
    p = path or paths.config_dir() / "registration.json"
    c = json.loads(Path(p).read_text(encoding="utf-8"))
    return RegistrationSettings(
        working_spacing_mm=float(c["working_spacing_mm"]),
        window_hu=(float(c["intensity_window_hu"][0]), float(c["intensity_window_hu"][1])),
        threads=int(c["threads"]),
        parameter_files=tuple(c["elastix_parameter_files"]),
        margins={k: float(v) for k, v in c["crop_margin_mm"].items()},
        mask_margin_mm=float(c["metric_mask"]["lung_hull_margin_mm"]),
        neck_radius_mm=float(c["metric_mask"]["neck_radius_mm"]),
        scale_limits=(float(c["prealignment"]["scale_limits"][0]), float(c["prealignment"]["scale_limits"][1])),
        z_smoothing_mm=float(c["prealignment"]["z_smoothing_mm"]),
        landmarks=LandmarkSettings.from_config(c["landmarks"]),
        min_tissue_hu=float(c["label_transfer"]["min_tissue_hu"]),
        region_margin_mm=float(c["label_transfer"]["region_margin_mm"]),
        order_above=[list(p) for p in c["anatomical_order"]["above"]],
        order_right_of=[list(p) for p in c["anatomical_order"]["right_of"]],
        rules={k: v for k, v in c["quality"].items() if isinstance(v, dict)},
    )


def elastix_folder(atlas_folder: Path | None = None) -> Path:
    """Elastix parameter files: the atlas folder's `elastix/` if it has one, else the default atlas's."""
    if atlas_folder is not None and (Path(atlas_folder) / "elastix").is_dir():
        return Path(atlas_folder) / "elastix"
    return paths.atlas_dir() / "elastix"


@dataclass
class AtlasResult:
    """The outcome of registering one atlas to the patient."""

    name: str
    grade: Grade
    figures: dict[str, Any]
    labels: np.ndarray | None  # uint8 on the patient CT grid; None when failed
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"atlas": self.name, "status": self.grade.status, "reasons": list(self.grade.reasons),
                "figures": self.figures, "seconds": round(self.seconds, 2)}


@dataclass
class StationResult:
    """Stations on the patient's CT grid (None when failed) with the registration's quality."""

    grid: Grid
    labels: np.ndarray | None
    grade: Grade
    landmarks: dict[str, Any]
    atlases: list[AtlasResult] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.grade.status

    def report(self) -> dict[str, Any]:
        """The JSON of `registration.json`."""
        present = sorted(int(v) for v in np.unique(self.labels) if v) if self.labels is not None else []
        names = {s.label: s.station for s in load_stations()}
        return {
            "status": self.grade.status,
            "reasons": list(self.grade.reasons),
            "stations_found": [names.get(v, str(v)) for v in present],
            "stations_missing": [s for v, s in names.items() if v not in present] if self.labels is not None else list(names.values()),
            "fusion": "majority vote" if len([a for a in self.atlases if a.labels is not None]) > 1 else "single atlas",
            "landmarks": self.landmarks,
            "atlases": [a.as_dict() for a in self.atlases],
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }


@dataclass(frozen=True)
class PreparedAtlas:
    """An atlas with its working-resolution copy, landmarks and label borders (computed once)."""

    atlas: AtlasImage
    landmarks: ThoraxLandmarks
    label_border: np.ndarray  # bool on the label grid: voxels next to another label
    indicators: dict[int, tuple[np.ndarray, np.ndarray]]  # label -> (k, j, i offset, float32 indicator over its box)


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
        raise ValueError(f"atlas {atlas.name}: no carina or lungs found in its CT; is it a chest CT in HU?")
    border = ndimage.maximum_filter(atlas.labels, size=3) != ndimage.minimum_filter(atlas.labels, size=3)
    return PreparedAtlas(atlas, lm, border, _indicators(atlas.labels))


def _indicators(labels: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per label, its indicator (float32) over its bounding box plus one voxel, and the box's offset."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for value, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        lo = np.array([max(0, x.start - 1) for x in sl])
        hi = np.array([min(n, x.stop + 1) for x, n in zip(sl, labels.shape)])
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        out[value] = (lo.astype(float), (labels[box] == value).astype(np.float32))
    return out


def map_stations(hu: np.ndarray, grid: Grid, atlases: list[AtlasImage], settings: RegistrationSettings | None = None,
                 timer: StageTimer | None = None, elastix_dir: Path | None = None) -> StationResult:
    """Register the atlases to a patient CT (HU, ``[k, j, i]`` on `grid`) and carry their stations over."""
    settings = settings or load_settings()
    timer = timer or StageTimer()
    if not atlases:
        raise ValueError("map_stations needs at least one atlas")
    with timer.stage("patient landmarks"):
        work, work_grid = working_copy(np.asarray(hu, np.float32), grid, settings.working_spacing_mm)
        lm = find_landmarks(work, work_grid, settings.landmarks)
    figures = lm.figures()
    g = grade(figures, settings.rules, only=LANDMARK_FIGURES)
    result = StationResult(grid, None, g, figures, timings_s=timer.timings)
    if g.status == "failed":
        return result
    results: list[AtlasResult] = []
    for atlas in atlases:
        with timer.stage(f"register atlas {atlas.name}"):
            results.append(register_one(hu, grid, work, work_grid, lm, prepare_atlas(atlas, settings), settings, elastix_dir))
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
    dropped = [r.name for r in results if r.labels is None]
    if dropped:
        result.grade.add("suspect", f"atlas(es) {', '.join(dropped)} failed and were left out of the fusion")
    return result


def register_one(hu: np.ndarray, grid: Grid, work: np.ndarray, work_grid: Grid, lm: ThoraxLandmarks, atlas: PreparedAtlas,
                 settings: RegistrationSettings, elastix_dir: Path | None) -> AtlasResult:
    """Register one prepared atlas to the patient; grade it; carry its labels over unless it failed."""
    t0 = time.perf_counter()
    fixed, fixed_grid = thorax_crop(work, work_grid, lm, settings.margins)
    body, _ = thorax_crop(thorax_mask(lm, settings.mask_margin_mm, settings.neck_radius_mm), work_grid, lm, settings.margins)
    lungs, _ = thorax_crop(lm.lungs, work_grid, lm, settings.margins)
    _, _, zs = fixed_grid.axis_coordinates()
    pre = prealign(lm, atlas.landmarks, settings.scale_limits, settings.z_smoothing_mm, (float(zs[0]), float(zs[-1])))
    a = atlas.atlas
    idx = pre.atlas_index_on(fixed_grid, a.ct_grid)
    moving = ndimage.map_coordinates(a.ct, idx, order=1, mode="constant", cval=-1000.0, output=np.float32)
    n = np.array(a.ct.shape, float)[:, None, None, None]
    valid = np.all((idx >= 0) & (idx <= n - 1), axis=0)
    mask = body & valid
    lo, hi = settings.window_hu
    folder = elastix_dir or elastix_folder(Path(a.source))
    displacement = run_elastix(np.clip(fixed, lo, hi), np.clip(moving, lo, hi), fixed_grid, mask, folder, settings)
    mapping = pre.apply(_points(fixed_grid) + displacement)  # patient point -> atlas point (LPS)
    figures: dict[str, Any] = {"init_scale_min": round(float(pre.raw_scales.min()), 3), "init_scale_max": round(float(pre.raw_scales.max()), 3)}
    figures.update(_quality_figures(fixed, fixed_grid, mask, lungs, mapping, atlas, settings))
    labels: np.ndarray | None = None
    g = grade(figures, settings.rules, only=set(figures) - LANDMARK_FIGURES)
    if g.status != "failed":
        labels, air_fraction = transfer_labels(hu, grid, mapping, fixed_grid, atlas, settings)
        figures.update(_station_figures(labels, grid, a.labels, air_fraction, settings))
        g.merge(grade(figures, settings.rules, only=STATION_FIGURES))
        if g.status == "failed":
            labels = None
    return AtlasResult(a.name, g, figures, labels, time.perf_counter() - t0)


def _station_figures(labels: np.ndarray, grid: Grid, atlas_labels: np.ndarray, air_fraction: float | None,
                     settings: RegistrationSettings) -> dict[str, Any]:
    """Missing stations, stations out of anatomical order, and how much of them fell on air or lung."""
    names = {s.label: s.station for s in load_stations()}
    present = {int(v) for v in np.unique(labels) if v}
    expected = {int(v) for v in np.unique(atlas_labels) if v}
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


def run_elastix(fixed: np.ndarray, moving: np.ndarray, grid: Grid, mask: np.ndarray, folder: Path,
                settings: RegistrationSettings) -> np.ndarray:
    """Elastix with the parameter files of `folder`; the displacement field ``[k, j, i, 3]`` (mm) on `grid`."""
    itk = itk_module()
    params = read_parameter_files([folder / f for f in settings.parameter_files])
    threads = settings.threads or (os.cpu_count() or 1)
    multi_metric = any("MultiMetric" in params.GetParameter(i, "Registration")[0] for i in range(params.GetNumberOfParameterMaps()))
    if multi_metric:
        threads = 1  # itk-elastix crashes on multi-metric registrations with several threads (ITKElastix #160)
    fixed_image = to_itk(fixed, grid)
    with tempfile.TemporaryDirectory(prefix="nstage-elastix-") as scratch:  # transformix writes files: keep them out of the CWD
        _, transform = itk.elastix_registration_method(
            fixed_image, to_itk(moving, grid), parameter_object=params, fixed_mask=to_itk(mask.astype(np.uint8), grid, np.uint8),
            log_to_console=False, number_of_threads=threads, output_directory=scratch,
        )
        field_image = itk.transformix_deformation_field(fixed_image, transform, output_directory=scratch)
        field, _ = from_itk(field_image)
    return field.astype(np.float64)


def _quality_figures(fixed: np.ndarray, fixed_grid: Grid, mask: np.ndarray, lungs: np.ndarray, mapping: np.ndarray,
                     atlas: PreparedAtlas, settings: RegistrationSettings) -> dict[str, Any]:
    """Similarity, lung overlap, folding and station region of one registration, on the working grid."""
    a = atlas.atlas
    lo, hi = settings.window_hu
    warped = np.clip(_sample(a.ct, a.ct_grid, mapping, order=1, fill=-1000.0), lo, hi)
    lm = atlas.landmarks
    atlas_lungs = _sample(lm.lungs.astype(np.uint8), lm.grid, mapping, order=0, fill=0) > 0
    stations = _sample(a.labels, a.label_grid, mapping, order=0, fill=0) > 0
    region = dilate_mm(stations, fixed_grid.spacing, settings.region_margin_mm) & mask
    det = jacobian_determinant(mapping, fixed_grid.spacing)[mask]
    clipped = np.clip(fixed, lo, hi)
    return {
        "ncc_thorax": _round(ncc(clipped, warped, mask)),
        "ncc_mediastinum": _round(ncc(clipped, warped, region)),
        "lung_dice": _round(dice(lungs & mask, atlas_lungs & mask)),
        "jacobian_min": _round(float(det.min()) if det.size else None),
        "folded_fraction": _round(float((det <= 0).mean()) if det.size else None, 5),
    }


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


def _sample(array: np.ndarray, grid: Grid, points: np.ndarray, order: int, fill: float) -> np.ndarray:
    """Values of a ``[k, j, i]`` array at LPS points ``[..., 3]``."""
    idx = grid.lps_to_index(points.reshape(-1, 3))
    out = ndimage.map_coordinates(array, [idx[:, 2], idx[:, 1], idx[:, 0]], order=order, mode="constant", cval=fill)
    return out.reshape(points.shape[:-1])


def transfer_labels(hu: np.ndarray, grid: Grid, mapping: np.ndarray, work_grid: Grid, atlas: PreparedAtlas,
                    settings: RegistrationSettings, chunk_points: int = 1_500_000) -> tuple[np.ndarray, float | None]:
    """The atlas's station labels on the patient CT grid (uint8), through `mapping` (working grid -> atlas LPS).

    Only a box around the stations is computed. Near label borders each label's indicator is
    interpolated linearly and the largest wins (no holes, no label bleeding); elsewhere the
    nearest label is taken. Voxels whose CT value is below `min_tissue_hu` (air, lung) get none;
    the fraction of station voxels that this removed is returned with the map (None if none).
    """
    a = atlas.atlas
    out = np.zeros(grid.shape, np.uint8)
    near = _sample(a.labels, a.label_grid, mapping, order=0, fill=0) > 0
    if not near.any():
        return out, None
    labelled = removed = 0
    k, j, i = np.nonzero(dilate_mm(near, work_grid.spacing, settings.region_margin_mm))
    box = work_grid.index_to_lps(np.array([[i.min(), j.min(), k.min()], [i.max(), j.max(), k.max()]], float))
    corners = np.array([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]])
    idx = grid.lps_to_index(corners)
    n = np.array(grid.shape[::-1])
    lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, n - 1)
    hi = np.clip(np.ceil(idx.max(axis=0)).astype(int), 0, n - 1)
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="xy")
    per_chunk = max(1, chunk_points // ii.size)
    for k0 in range(lo[2], hi[2] + 1, per_chunk):
        ks = np.arange(k0, min(k0 + per_chunk, hi[2] + 1))
        ijk = np.stack([np.tile(ii.ravel(), ks.size), np.tile(jj.ravel(), ks.size), np.repeat(ks, ii.size)], axis=1).astype(float)
        lab = _labels_at(_map_points(grid.index_to_lps(ijk), mapping, work_grid), atlas)
        block = (slice(ks[0], ks[-1] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
        lab = lab.reshape((ks.size,) + ii.shape)
        air = (hu[block] < settings.min_tissue_hu) & (lab > 0)
        labelled += int(np.count_nonzero(lab))
        removed += int(np.count_nonzero(air))
        lab[air] = 0
        out[block] = lab
    return out, (removed / labelled if labelled else None)


def _map_points(points: np.ndarray, mapping: np.ndarray, work_grid: Grid) -> np.ndarray:
    """Atlas LPS points of patient LPS points: the mapping interpolated (linear; constant beyond its grid)."""
    idx = work_grid.lps_to_index(points)
    coords = [idx[:, 2], idx[:, 1], idx[:, 0]]
    return np.stack([ndimage.map_coordinates(mapping[..., c], coords, order=1, mode="nearest") for c in range(3)], axis=1)


def _labels_at(points: np.ndarray, atlas: PreparedAtlas) -> np.ndarray:
    """Station labels at atlas LPS points: nearest label, per-label linear interpolation + argmax at borders."""
    a = atlas.atlas
    idx = a.label_grid.lps_to_index(points)
    coords = np.array([idx[:, 2], idx[:, 1], idx[:, 0]])
    lab = ndimage.map_coordinates(a.labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    border = ndimage.map_coordinates(atlas.label_border.view(np.uint8), coords, order=0, mode="constant", cval=0) > 0
    if border.any():
        c = coords[:, border]
        total = np.zeros(c.shape[1], np.float32)
        best = np.zeros(c.shape[1], np.float32)
        choice = np.zeros(c.shape[1], np.uint8)
        for value, (offset, indicator) in atlas.indicators.items():
            w = ndimage.map_coordinates(indicator, c - offset[:, None], order=1, mode="constant", cval=0.0, output=np.float32)
            total += w
            better = w > best
            best[better], choice[better] = w[better], value
        choice[best < 1.0 - total] = 0  # background (its indicator is what the labels leave) wins
        lab[border] = choice
    return lab
