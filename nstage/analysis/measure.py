"""Per-station PET/CT measurements in patient space: volume, SUVmax, SUVmean, SUVpeak, hottest point.

The PET is sampled at the CT voxel centres by nearest neighbour, so SUVmax is the value of a real
PET voxel (as a reader's VOI on PET/CT reports it), not an interpolated one. SUVpeak is the
highest mean SUV in a sphere of `suv_peak_sphere_ml` (1 ml by default) centred in the station.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from nstage.analysis.config import analysis_config
from nstage.geometry import Grid, resample, sub_grid
from nstage.stations import present_labels


@dataclass(frozen=True)
class StationUptake:
    label: int
    volume_ml: float
    suv_max: float
    suv_mean: float
    suv_peak: float
    hottest_point_lps: tuple[float, float, float]

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["hottest_point_lps"] = [round(v, 1) for v in self.hottest_point_lps]
        return d


def sphere_mean(suv: np.ndarray, grid: Grid, volume_ml: float) -> np.ndarray:
    """Mean SUV in a sphere of `volume_ml` around every voxel (voxel centres inside the sphere)."""
    r = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    sx, sy, sz = grid.spacing
    n = [int(np.floor(r / s)) for s in (sz, sy, sx)]
    k, j, i = np.meshgrid(*(np.arange(-m, m + 1) for m in n), indexing="ij")
    ball = ((k * sz) ** 2 + (j * sy) ** 2 + (i * sx) ** 2) <= r * r
    kernel = ball.astype(np.float32) / ball.sum()
    return ndimage.convolve(suv.astype(np.float32), kernel, mode="nearest")


def suv_peak_map(suv: np.ndarray, pet_grid: Grid) -> np.ndarray:
    """The SUVpeak of every PET voxel: the mean in the configured sphere (`suv_peak_sphere_ml`) around it."""
    return sphere_mean(suv, pet_grid, float(analysis_config()["suv_peak_sphere_ml"]))


def station_uptake(suv: np.ndarray, pet_grid: Grid, stations: np.ndarray, ct_grid: Grid,
                   peak: np.ndarray | None = None) -> dict[int, StationUptake]:
    """SUV figures inside every labelled station of a label map on the CT grid (`peak`: suv_peak_map, if already made)."""
    labels = present_labels(stations)
    if not labels:
        return {}
    peak = suv_peak_map(suv, pet_grid) if peak is None else peak
    boxes = ndimage.find_objects(stations)
    out: dict[int, StationUptake] = {}
    for lab in labels:
        box = boxes[int(lab) - 1]
        sub = sub_grid(ct_grid, box)
        mask = stations[box] == lab
        values = resample(suv, pet_grid, sub, order=0)
        peaks = resample(peak, pet_grid, sub, order=0)[mask]
        inside = values[mask]
        hot = np.argwhere(mask)[int(np.argmax(inside))]
        out[int(lab)] = StationUptake(
            label=int(lab),
            volume_ml=float(mask.sum()) * ct_grid.voxel_volume_ml,
            suv_max=float(inside.max()),
            suv_mean=float(inside.mean()),
            suv_peak=float(peaks.max()),
            hottest_point_lps=tuple(float(v) for v in sub.index_to_lps(hot[::-1])),
        )
    return out
