"""From painted tissue labels to CT numbers and FDG uptake (SUV), with texture, blur and noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid
from nstage.synth.lesions import PlacedNode, PlacedTumour, node_ground
from nstage.synth.rasterize import Canvas
from nstage.synth.shapes import Ellipsoid
from nstage.synth.tissues import label, lookup_table, tissues

TUMOUR_INSTANCE = 1
NECROSIS_INSTANCE = 2
PET_NOISE_SPACING_MM = 4.0


@dataclass(frozen=True)
class Lesions:
    """What paint_lesions left on a canvas: the instance of every lesion voxel and the nodes' necrotic cores."""

    instance: np.ndarray  # 0 none, 1 tumour, 2 tumour necrosis, 3+ nodes
    node_core: np.ndarray  # bool: necrotic core of a node


def _sign_shape(node: PlacedNode) -> Ellipsoid | None:
    """The node's inner structure: a fatty hilum reaching its margin, or a central core (necrosis, calcium)."""
    spec, shape = node.spec, node.shape
    f = spec.sign_fraction
    if f <= 0:
        return None
    semi = shape.semi_axes * f
    if spec.fatty_hilum:
        # a fat core shifted towards one flank, so that it opens to the margin as a notch
        offset = shape.rotation[:, 1] * shape.semi_axes[1] * (1.0 - 0.6 * f)
        return Ellipsoid(shape.centre + offset, semi, shape.rotation)
    return Ellipsoid(shape.centre, semi, shape.rotation)


def paint_lesions(canvas: Canvas, tumour: PlacedTumour, nodes: list[PlacedNode]) -> Lesions:
    """Paint tumour and nodes (with hilum fat, calcium and necrotic cores) onto the canvas.

    Each lesion is worked on within a box that holds it (the same voxels as on the whole grid)."""
    instance = np.zeros(canvas.grid.shape, np.uint16)
    core = np.zeros(canvas.grid.shape, bool)
    found = canvas.box_mask(tumour.shape)
    if found is not None:
        box, m = found
        tissue = canvas.tissue[box]
        m &= np.isin(tissue, [label("lung"), label("mediastinal_fat")])
        tissue[m] = label("tumour")
        instance[box][m] = TUMOUR_INSTANCE
        if tumour.necrosis is not None:
            instance[box][canvas.mask_in(tumour.necrosis, box) & m] = NECROSIS_INSTANCE
    for node in nodes:
        found = canvas.box_mask(node.shape)
        if found is None:
            continue
        box, m = found
        tissue = canvas.tissue[box]
        m &= node_ground(tissue)
        tissue[m] = label("lymph_node")
        instance[box][m] = node.instance
        inner = _sign_shape(node)
        if inner is None:
            continue
        part = canvas.mask_in(inner, box) & m
        if node.spec.fatty_hilum:
            tissue[part] = label("mediastinal_fat")
        elif node.spec.calcified:
            tissue[part] = label("calcification")
        elif node.spec.necrotic:
            core[box] |= part
    return Lesions(instance, core)


def node_tissue_hu(lesions: Lesions, tissue: np.ndarray, nodes: list[PlacedNode], contrast: bool) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices of solid node tissue and their CT numbers: each node's own density, necrotic cores lower and unenhanced."""
    solid = (lesions.instance >= 3) & (tissue == label("lymph_node"))
    idx = np.flatnonzero(solid)
    inst = lesions.instance.ravel()[idx]
    table = np.zeros(int(lesions.instance.max()) + 1, np.float32)
    drop = np.zeros_like(table)
    enh = np.zeros_like(table)
    for n in nodes:
        if n.instance < table.size:
            table[n.instance] = n.spec.tissue_hu
            enh[n.instance] = n.spec.enhancement_hu if contrast else 0.0
            drop[n.instance] = n.spec.necrosis_hu_drop
    in_core = lesions.node_core.ravel()[idx]
    values = table[inst] + np.where(in_core, 0.0, enh[inst]) - np.where(in_core, drop[inst], 0.0)
    return idx, values.astype(np.float32)


def node_hu_means(lesions: Lesions, tissue: np.ndarray, nodes: list[PlacedNode], contrast: bool,
                  own_hu: tuple[np.ndarray, np.ndarray] | None = None) -> dict[int, float]:
    """Mean designed CT number (before texture, blur and noise) over each node's voxels, hilum fat and
    calcium included; `own_hu`: node_tissue_hu's result, if already made. Only node voxels are read."""
    key = "hu_contrast" if contrast else "hu"
    idx, values = own_hu if own_hu is not None else node_tissue_hu(lesions, tissue, nodes, contrast)
    voxels = np.flatnonzero(lesions.instance >= 3)  # sorted, and holds every solid node voxel of idx
    hu = lookup_table({n: getattr(t, key) for n, t in tissues().items()})[tissue.ravel()[voxels]]
    hu[np.searchsorted(voxels, idx)] = values
    inst = lesions.instance.ravel()[voxels]
    sums = np.bincount(inst, weights=hu, minlength=int(lesions.instance.max()) + 1)
    counts = np.bincount(inst, minlength=sums.size)
    return {n.instance: round(float(sums[n.instance] / counts[n.instance]), 1) for n in nodes if n.instance < counts.size and counts[n.instance]}


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float | tuple[float, ...]) -> np.ndarray:
    """Unit-variance Gaussian noise correlated over about `sigma_vox` voxels."""
    n = rng.standard_normal(shape, dtype=np.float32)
    if np.any(np.asarray(sigma_vox) > 0):
        n = ndimage.gaussian_filter(n, sigma_vox, mode="nearest")
        n /= max(float(n.std()), 1e-6)
    return n


@dataclass(frozen=True)
class CtSettings:
    contrast: bool
    noise_hu: float
    kvp: float = 120.0


def render_ct(canvas: Canvas, rng: np.random.Generator, settings: CtSettings, own_hu: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """CT in HU on the canvas grid: tissue values (`own_hu`: flat voxel indices and values that
    replace them, e.g. each node's density), texture, lung gradient, table, blur and noise."""
    ts = tissues()
    key = "hu_contrast" if settings.contrast else "hu"
    hu = lookup_table({n: getattr(t, key) for n, t in ts.items()})[canvas.tissue]
    if own_hu is not None:
        hu.ravel()[own_hu[0]] = own_hu[1]
    tex = lookup_table({n: t.texture_hu for n, t in ts.items()})[canvas.tissue]
    sx, sy, sz = canvas.grid.spacing
    hu += tex * smooth_noise(rng, canvas.grid.shape, (2.0 / sz, 1.5 / sy, 1.5 / sx))
    lung = canvas.tissue == label("lung")
    hu[lung] += 70.0 * np.clip((canvas.cy[lung] + 60.0) / 160.0, 0, 1)  # dependent (posterior) lung is denser
    _paint_table(hu, canvas.grid, canvas.tissue)
    hu = ndimage.gaussian_filter(hu, (0.35, 0.6, 0.6), mode="nearest")  # system resolution
    hu += settings.noise_hu * smooth_noise(rng, canvas.grid.shape, (0.0, 0.7, 0.7))
    return np.clip(hu, -1024, 3071).astype(np.float32)


def _paint_table(hu: np.ndarray, grid: Grid, tissue: np.ndarray) -> None:
    """A curved carbon-fibre table shell just under the patient's back (patient space)."""
    xs, ys, _ = grid.axis_coordinates()
    rows = np.nonzero(tissue.any(axis=(0, 2)))[0]
    if rows.size == 0:
        return
    table_y = ys[rows.max()] + 1.5
    y_surface = table_y - 0.0006 * xs**2  # the sides curve up around the patient
    d = ys[:, None] - y_surface[None, :]
    shell = ((d >= 0) & (d < 3)) | ((d >= 18) & (d < 21))
    core = (d >= 3) & (d < 18)
    inside = np.abs(xs)[None, :] < 230
    hu[:, shell & inside] = 300.0
    hu[:, core & inside] = np.minimum(hu[:, core & inside], -850.0)


@dataclass(frozen=True)
class PetSettings:
    fwhm_mm: float
    noise: float  # noise sd at SUV 1 (relative to the square root of the local mean)
    tissue_suv: dict[str, float]


def sample_pet_settings(rng: np.random.Generator, preset: dict[str, Any]) -> PetSettings:
    """Per-patient tissue uptake (within the ranges of tissues.json) and the preset's scanner blur/noise."""
    suv = {n: float(rng.uniform(*t.suv_range)) for n, t in tissues().items()}
    suv["myocardium"] = float(np.exp(rng.uniform(np.log(1.3), np.log(12.0))))  # fasting state varies a lot
    for n in ("venous_blood", "cardiac_blood"):
        suv[n] = suv["arterial_blood"] * rng.uniform(0.95, 1.05)
    return PetSettings(fwhm_mm=float(rng.uniform(*preset["pet_fwhm_mm"])), noise=float(rng.uniform(*preset["pet_noise"])), tissue_suv=suv)


def uptake_map(canvas: Canvas, lesions: Lesions, tumour: PlacedTumour, nodes: list[PlacedNode], settings: PetSettings, rng: np.random.Generator) -> np.ndarray:
    """Noise-free SUV of every voxel (before scanner blur): tissues, the tumour, and each node with
    its hilum fat at fat uptake, its calcium lower and its necrotic core at a fraction of the rim."""
    instance = lesions.instance
    suv = lookup_table(settings.tissue_suv)[canvas.tissue]
    sx, sy, sz = canvas.grid.spacing
    suv *= 1.0 + 0.08 * smooth_noise(rng, canvas.grid.shape, (6.0 / sz, 6.0 / sy, 6.0 / sx))
    lung = canvas.tissue == label("lung")
    suv[lung] *= 0.8 + 0.5 * np.clip((canvas.cy[lung] + 60.0) / 160.0, 0, 1)
    values = np.zeros(int(instance.max()) + 1 if instance.size else 1, np.float32)
    core = np.ones_like(values)
    values[TUMOUR_INSTANCE] = tumour.spec.suv
    if NECROSIS_INSTANCE < values.size:
        values[NECROSIS_INSTANCE] = 0.8
    for n in nodes:
        if n.instance < values.size:
            values[n.instance] = n.spec.suv
            core[n.instance] = n.spec.core_uptake_fraction
    lesion = (instance > 0) & (canvas.tissue != label("mediastinal_fat"))
    suv[lesion] = values[instance[lesion]]
    necrotic = lesions.node_core
    suv[necrotic] *= core[instance[necrotic]]
    calc = canvas.tissue == label("calcification")
    suv[calc] *= 0.7
    return np.maximum(suv, 0.0)


def sample_points(source: Grid, target: Grid) -> np.ndarray:
    """(3, N) continuous source indices (k, j, i) of the target's voxel centres, in C order: the numbers
    ``source.lps_to_index(target.index_to_lps(ijk))`` gives. Axis-aligned grids map each axis on its own
    (the matrices' other entries are zeros, which add nothing), so three short rows are worked out and spread."""
    to_lps = target.direction * np.asarray(target.spacing)[None, :]
    to_index = source._to_index
    if not (_is_diagonal(to_lps) and _is_diagonal(to_index)):
        k, j, i = np.meshgrid(*(np.arange(n) for n in target.shape), indexing="ij")
        idx = source.lps_to_index(target.index_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3)))
        return np.stack([idx[:, 2], idx[:, 1], idx[:, 0]])
    out = np.empty((3, *target.shape))
    for c in range(3):  # c: x, y, z = array axes 2, 1, 0
        n = np.arange(target.shape[2 - c], dtype=float)
        row = ((n * to_lps[c, c] + target.origin[c]) - source.origin[c]) * to_index[c, c]
        view = [1, 1, 1]
        view[2 - c] = row.size
        out[2 - c] = row.reshape(view)
    return out.reshape(3, -1)


def _is_diagonal(m: np.ndarray) -> bool:
    return np.count_nonzero(m - np.diag(np.diag(m))) == 0


def render_pet(uptake: np.ndarray, source: Grid, target: Grid, settings: PetSettings, rng: np.random.Generator) -> np.ndarray:
    """Scanner image in SUV on the PET grid: PSF blur, voxel sampling and count-dependent noise."""
    sigma_mm = settings.fwhm_mm / 2.3548
    sx, sy, sz = source.spacing
    tx, ty, tz = target.spacing
    # blur by the PSF and the PET voxel's own extent (box of the target spacing ~ sd spacing/sqrt(12))
    sig = [np.sqrt(sigma_mm**2 + t**2 / 12.0) / s for s, t in ((sz, tz), (sy, ty), (sx, tx))]
    blurred = ndimage.gaussian_filter(uptake, sig, mode="constant")
    mean = ndimage.map_coordinates(blurred, sample_points(source, target), order=1, mode="constant", cval=0.0)
    mean = mean.reshape(target.shape).astype(np.float32)
    noise = smooth_noise(rng, target.shape, 0.6)
    img = mean + settings.noise * np.sqrt(np.maximum(mean, 0.0)) * noise
    return np.maximum(img, 0.0).astype(np.float32)
