"""The mediastinal blood-pool SUV: mean SUV in the descending aorta's lumen, the reference of the visual criterion.

The region comes from the atlas (`regions.blood_pool`), carried to the patient by the station
registration. Voxels whose CT value is not blood (lung, fat, calcified plaque: outside the
configured HU range) are left out, so a region slipping onto the wall or the lung does not pull
the figure. Too little region left gives no blood-pool figure, with the reason, rather than a
wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.analysis.config import analysis_config
from nstage.geometry import Grid


@dataclass(frozen=True)
class BloodPool:
    """Blood-pool SUV figures (None values with a reason when it could not be measured)."""

    suv_mean: float | None
    suv_sd: float | None
    volume_ml: float
    reason: str

    @property
    def available(self) -> bool:
        return self.suv_mean is not None

    def as_dict(self) -> dict[str, object]:
        return {"available": self.available, "suv_mean": None if self.suv_mean is None else round(self.suv_mean, 3),
                "suv_sd": None if self.suv_sd is None else round(self.suv_sd, 3), "volume_ml": round(self.volume_ml, 2),
                "region": "descending thoracic aorta (atlas region, registered)", "detail": self.reason}


def _values_at(array: np.ndarray, grid: Grid, points: np.ndarray, order: int) -> np.ndarray:
    idx = grid.lps_to_index(points)
    return ndimage.map_coordinates(array, [idx[:, 2], idx[:, 1], idx[:, 0]], order=order, mode="constant", cval=np.nan)


def measure_blood_pool(region: tuple[np.ndarray, Grid] | None, hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid) -> BloodPool:
    """Blood-pool SUVmean in `region` (a bool mask on its own grid), blood-density CT voxels only."""
    if region is None:
        return BloodPool(None, None, 0.0, "the atlas has no blood-pool region")
    cfg = analysis_config()["blood_pool"]
    mask, grid = region
    k, j, i = np.nonzero(mask)
    if k.size == 0:
        return BloodPool(None, None, 0.0, "the blood-pool region fell outside the CT")
    points = grid.index_to_lps(np.stack([i, j, k], axis=1).astype(float))
    lo, hi = cfg["hu_range"]
    ct_values = _values_at(np.asarray(hu, np.float32), ct_grid, points, order=0)
    suv_values = _values_at(np.asarray(suv, np.float32), pet_grid, points, order=1)
    keep = (ct_values >= lo) & (ct_values <= hi) & np.isfinite(suv_values)
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    volume = float(np.count_nonzero(keep)) * voxel_ml
    if volume < float(cfg["min_volume_ml"]):
        return BloodPool(None, None, volume, f"only {volume:.1f} ml of the region has blood density ({lo}..{hi} HU); "
                                              f"at least {cfg['min_volume_ml']} ml needed")
    values = suv_values[keep]
    left_out = 1.0 - keep.mean()
    return BloodPool(float(values.mean()), float(values.std()), volume,
                     f"{volume:.1f} ml, {100 * left_out:.0f} % of the registered region left out as not blood density")
