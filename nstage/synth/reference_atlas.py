"""`nstage atlas build`: the default atlas, rendered reproducibly from the generator's reference anatomy.

The reference anatomy (``AnatomyParams()``, identity frame: LPS millimetres, carina at the
origin) is painted on a CT grid over the thorax and rendered to HU by the generator's CT renderer
(tissue values, texture, blur) without scanner noise and without the table; the station label
map comes from the generator's station builder on a finer grid over the stations only. Settings
live in `config/atlas_build.json`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nstage import __version__, paths
from nstage.atomic_output import staged_output
from nstage.geometry import Grid, save_nifti
from nstage.progress import StageTimer
from nstage.stationmap.atlas import FORMAT, MANIFEST
from nstage.synth.anatomy import Anatomy, AnatomyParams, build_anatomy
from nstage.synth.case import (
    with_lung_vessels,  # the generator's own way of adding lung vessels
)
from nstage.synth.frame import identity_frame
from nstage.synth.rasterize import Canvas, paint_anatomy
from nstage.synth.render import CtSettings, render_ct
from nstage.synth.shapes import Tube
from nstage.synth.station_builder import build_stations
from nstage.synth.tissues import label


@dataclass(frozen=True)
class BuildSettings:
    """What `config/atlas_build.json` holds."""

    name: str
    ct_spacing_mm: float
    box_lo: np.ndarray
    box_hi: np.ndarray
    ct_noise_hu: float
    ct_quantum_hu: float
    texture_seed: int
    label_spacing_mm: float
    label_margin_mm: float
    blood_pool_min_y_mm: float
    blood_pool_z_mm: tuple[float, float]
    blood_pool_radius_factor: float


def load_build_settings(path: Path | None = None) -> BuildSettings:
    """Read the atlas build settings."""
    p = path or paths.config_dir() / "atlas_build.json"
    c = json.loads(Path(p).read_text(encoding="utf-8"))
    return BuildSettings(
        name=str(c["name"]), ct_spacing_mm=float(c["ct_spacing_mm"]),
        box_lo=np.asarray(c["ct_box_lps_mm"]["lo"], float), box_hi=np.asarray(c["ct_box_lps_mm"]["hi"], float),
        ct_noise_hu=float(c["ct_noise_hu"]), ct_quantum_hu=float(c["ct_quantum_hu"]), texture_seed=int(c["texture_seed"]),
        label_spacing_mm=float(c["label_spacing_mm"]), label_margin_mm=float(c["label_margin_mm"]),
        blood_pool_min_y_mm=float(c["blood_pool"]["min_y_mm"]),
        blood_pool_z_mm=(float(c["blood_pool"]["z_range_mm"][0]), float(c["blood_pool"]["z_range_mm"][1])),
        blood_pool_radius_factor=float(c["blood_pool"]["radius_factor"]),
    )


@dataclass
class RenderedAtlas:
    """The template CT (int16 HU), station labels (uint8), each on its own grid, and the blood-pool region (CT grid)."""

    ct: np.ndarray
    ct_grid: Grid
    labels: np.ndarray
    label_grid: Grid
    blood_pool: np.ndarray  # uint8 on ct_grid


def blood_pool_tube(anatomy: Anatomy, settings: BuildSettings) -> Tube:
    """The inner part of the descending thoracic aorta (the blood-pool reference region)."""
    aorta = anatomy.organs["aorta"]
    assert isinstance(aorta, Tube)
    z0, z1 = settings.blood_pool_z_mm
    keep = (aorta.points[:, 1] >= settings.blood_pool_min_y_mm) & (aorta.points[:, 2] >= z0) & (aorta.points[:, 2] <= z1)
    if np.count_nonzero(keep) < 2:
        raise RuntimeError("the reference aorta has no descending part in the blood-pool range of config/atlas_build.json")
    return Tube(aorta.points[keep], aorta.radii[keep] * settings.blood_pool_radius_factor)


def reference_anatomy(seed: int) -> Anatomy:
    """The generator's reference anatomy with its lung vessel tree (fixed seed)."""
    return with_lung_vessels(build_anatomy(AnatomyParams()), np.random.default_rng(seed))


def render_atlas(settings: BuildSettings, timer: StageTimer | None = None) -> RenderedAtlas:
    """Render the template CT and its station label map (deterministic for given settings)."""
    timer = timer or StageTimer()
    anatomy = reference_anatomy(settings.texture_seed)
    frame = identity_frame()
    with timer.stage("template CT"):
        ct_grid = Grid.covering(settings.box_lo, settings.box_hi, (settings.ct_spacing_mm,) * 3)
        canvas = Canvas.create(ct_grid, frame)
        paint_anatomy(canvas, anatomy)
        hu = render_ct(canvas, np.random.default_rng(settings.texture_seed), CtSettings(contrast=False, noise_hu=settings.ct_noise_hu))
        hu[canvas.tissue == label("air")] = -1000.0  # no table: patients lie on different ones
        coarse = build_stations(canvas, anatomy)
        pool = Canvas.create(ct_grid, frame)
        pool.paint(blood_pool_tube(anatomy, settings), "arterial_blood")
        blood_pool = (pool.tissue == label("arterial_blood")).astype(np.uint8)
        del canvas, pool
    with timer.stage("station labels"):
        k, j, i = np.nonzero(coarse)
        if k.size == 0:
            raise RuntimeError("the station builder labelled no voxel of the reference anatomy")
        pts = ct_grid.index_to_lps(np.stack([i, j, k], axis=1))
        margin = settings.label_margin_mm + settings.ct_spacing_mm
        lo = np.maximum(pts.min(axis=0) - margin, settings.box_lo)
        hi = np.minimum(pts.max(axis=0) + margin, settings.box_hi)
        label_grid = Grid.covering(lo, hi, (settings.label_spacing_mm,) * 3)
        fine = Canvas.create(label_grid, frame)
        paint_anatomy(fine, anatomy)
        labels = build_stations(fine, anatomy)
    q = max(settings.ct_quantum_hu, 1.0)
    return RenderedAtlas((np.round(hu / q) * q).astype(np.int16), ct_grid, labels, label_grid, blood_pool)


def build_default_atlas(out: Path, settings: BuildSettings | None = None, timer: StageTimer | None = None) -> dict[str, Any]:
    """Write the default atlas into `out` (CT, labels, manifest); return the manifest."""
    settings = settings or load_build_settings()
    atlas = render_atlas(settings, timer)
    entry = {"name": settings.name, "ct": f"{settings.name}/ct.nii.gz", "labels": f"{settings.name}/stations.nii.gz", "names": "stations.json",
             "regions": {"blood_pool": f"{settings.name}/blood_pool.nii.gz"}}
    manifest = {
        "format": FORMAT,
        "description": "Default atlas: the synthetic generator's reference anatomy (see README.md). Rebuild with `nstage atlas build`.",
        "built_by": {"command": "nstage atlas build", "nstage_version": __version__, "settings": "config/atlas_build.json"},
        "atlases": [entry],
    }
    out = Path(out)
    with staged_output(out) as tmp:
        (tmp / settings.name).mkdir()
        save_nifti(atlas.ct, atlas.ct_grid, tmp / entry["ct"])
        save_nifti(atlas.labels, atlas.label_grid, tmp / entry["labels"])
        save_nifti(atlas.blood_pool, atlas.ct_grid, tmp / entry["regions"]["blood_pool"])
        if not (out / "stations.json").exists():
            shutil.copyfile(paths.atlas_dir() / "stations.json", tmp / "stations.json")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
