"""Per-station PET measurements on the CT grid (SUVmax, SUVmean, volume)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nstage.geometry import Grid, resample


@dataclass(frozen=True)
class StationUptake:
    label: int
    volume_ml: float
    suv_max: float
    suv_mean: float


def station_uptake(suv: np.ndarray, pet_grid: Grid, stations: np.ndarray, ct_grid: Grid) -> dict[int, StationUptake]:
    """SUV figures inside every labelled station.

    The PET is sampled at the CT voxel centres by nearest neighbour, so SUVmax is the value of a
    real PET voxel (as a reader's VOI on PET/CT reports it), not an interpolated one.
    """
    labels = np.unique(stations[stations > 0])
    if labels.size == 0:
        return {}
    boxes = ndimage.find_objects(stations)
    out: dict[int, StationUptake] = {}
    for lab in labels:
        box = boxes[int(lab) - 1]
        sub = Grid(
            shape=tuple(s.stop - s.start for s in box),
            spacing=ct_grid.spacing,
            origin=tuple(ct_grid.index_to_lps(np.array([box[2].start, box[1].start, box[0].start]))),
            direction=ct_grid.direction,
        )
        mask = stations[box] == lab
        values = resample(suv, pet_grid, sub, order=0)[mask]
        out[int(lab)] = StationUptake(int(lab), float(mask.sum()) * ct_grid.voxel_volume_ml, float(values.max()), float(values.mean()))
    return out
