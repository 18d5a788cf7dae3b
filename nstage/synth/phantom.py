"""A NEMA-style sphere phantom through the generator's PET model: SUVmax recovery by sphere size.

Spheres of 10-37 mm at 10:1 over a warm background are drawn on the render grid, blurred,
sampled and made noisy exactly as patient PET is (:func:`nstage.synth.render.render_pet`), at a
random position relative to the PET voxels. Recovery is the image's maximum in the sphere over the
true sphere activity, the figure EANM/EARL accreditation bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nstage.geometry import Grid
from nstage.synth.render import PetSettings, render_pet

NEMA_DIAMETERS_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
SPHERE_TO_BACKGROUND = 10.0
RENDER_MM = 1.0


@dataclass(frozen=True)
class Recovery:
    diameter_mm: float
    fwhm_mm: float
    rc_max: float  # mean over trials
    rc_max_sd: float


def _sphere_trial(diameter: float, settings: PetSettings, pet_pixel_mm: float, pet_slice_mm: float, rng: np.random.Generator) -> float:
    half = diameter / 2.0 + 3.0 * settings.fwhm_mm + 2.0 * pet_pixel_mm
    n = int(np.ceil(2 * half / RENDER_MM))
    src = Grid(shape=(n, n, n), spacing=(RENDER_MM,) * 3, origin=(-half,) * 3)
    xs, ys, zs = src.axis_coordinates()
    r2 = xs[None, None, :] ** 2 + ys[None, :, None] ** 2 + zs[:, None, None] ** 2
    uptake = np.where(r2 <= (diameter / 2.0) ** 2, SPHERE_TO_BACKGROUND, 1.0).astype(np.float32)
    shift = rng.uniform(-0.5, 0.5, 3) * np.array([pet_pixel_mm, pet_pixel_mm, pet_slice_mm])
    m = int(np.floor((half - 2.0 * pet_pixel_mm) / pet_pixel_mm))
    mz = int(np.floor((half - 2.0 * pet_slice_mm) / pet_slice_mm))
    target = Grid(shape=(2 * mz + 1, 2 * m + 1, 2 * m + 1), spacing=(pet_pixel_mm, pet_pixel_mm, pet_slice_mm),
                  origin=(-m * pet_pixel_mm + shift[0], -m * pet_pixel_mm + shift[1], -mz * pet_slice_mm + shift[2]))
    img = render_pet(uptake, src, target, settings, rng)
    txs, tys, tzs = target.axis_coordinates()
    inside = txs[None, None, :] ** 2 + tys[None, :, None] ** 2 + tzs[:, None, None] ** 2 <= (diameter / 2.0) ** 2
    return float(img[inside].max() / SPHERE_TO_BACKGROUND) if inside.any() else float("nan")


def sphere_recovery(fwhm_mm: float, noise: float, pet_pixel_mm: float, pet_slice_mm: float, seed: int = 0,
                    trials: int = 8, diameters: tuple[float, ...] = NEMA_DIAMETERS_MM) -> list[Recovery]:
    """SUVmax recovery of each sphere for one PET resolution and noise level (mean and SD over trials)."""
    rng = np.random.default_rng(seed)
    settings = PetSettings(fwhm_mm=fwhm_mm, noise=noise, tissue_suv={})
    out = []
    for d in diameters:
        rc = np.array([_sphere_trial(d, settings, pet_pixel_mm, pet_slice_mm, rng) for _ in range(trials)])
        out.append(Recovery(d, fwhm_mm, round(float(rc.mean()), 3), round(float(rc.std()), 3)))
    return out
