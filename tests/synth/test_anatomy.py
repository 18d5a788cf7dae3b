"""Anatomy and station regions of the phantom (reference anatomy and sampled patients)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nstage.geometry import Grid
from nstage.stations import by_name, load_stations
from nstage.synth.anatomy import AnatomyParams, build_anatomy, sample_params
from nstage.synth.frame import identity_frame, sample_frame
from nstage.synth.rasterize import Canvas, paint_anatomy
from nstage.synth.render import CtSettings, render_ct
from nstage.synth.station_builder import build_stations
from nstage.synth.tissues import label


def _patient(seed: int | None):
    if seed is None:
        params, frame = AnatomyParams(), identity_frame()
    else:
        rng = np.random.default_rng(seed)
        params = sample_params(rng, "F" if seed % 2 else "M", float(rng.uniform(19, 34)), float(rng.uniform(1.55, 1.9)))
        frame = sample_frame(rng, params.size, params.width, params.depth, np.array([3.0, -15.0, -400.0]))
    anatomy = build_anatomy(params)
    centre = frame.to_patient(np.array([0.0, 0.0, -20.0]))
    grid = Grid.covering(centre - [190, 170, 230], centre + [190, 170, 210], (2.0, 2.0, 2.5))
    canvas = Canvas.create(grid, frame)
    paint_anatomy(canvas, anatomy)
    stations = build_stations(canvas, anatomy)
    hu = render_ct(canvas, np.random.default_rng(0), CtSettings(contrast=False, noise_hu=10.0))
    return anatomy, canvas, stations, hu


@pytest.fixture(scope="module", params=[None, 11, 12], ids=["reference", "patient11", "patient12"])
def patient(request):
    return _patient(request.param)


def _centroid_lps(canvas: Canvas, mask: np.ndarray) -> np.ndarray:
    return canvas.grid.index_to_lps(np.argwhere(mask).mean(axis=0)[::-1])


def test_every_station_is_present(patient) -> None:
    _, canvas, stations, _ = patient
    for s in load_stations():
        ml = (stations == s.label).sum() * canvas.grid.voxel_volume_ml
        assert ml >= 0.5, f"station {s.station}: {ml:.2f} ml"


def test_lungs_are_air_and_stations_are_soft_tissue_or_fat(patient) -> None:
    _, canvas, stations, hu = patient
    lung = canvas.tissue == label("lung")
    deep = ndimage.binary_erosion(lung, iterations=2)  # away from vessels and pleura (partial volume)
    assert np.median(hu[lung]) < -750
    assert np.percentile(hu[deep], 99) < -500
    inside = stations > 0
    assert not (inside & lung).any()
    assert np.isin(canvas.tissue[inside], [label("mediastinal_fat")]).all()
    core = ndimage.binary_erosion(inside)  # partial volume at the borders aside
    assert np.mean(hu[core] < -500) < 0.01
    assert -140 < np.median(hu[inside]) < 60


def test_cranio_caudal_order(patient) -> None:
    _, canvas, stations, _ = patient
    z = {s.station: _centroid_lps(canvas, stations == s.label)[2] for s in load_stations()}
    assert z["1R"] > z["2R"] > z["4R"] > z["7"]
    assert z["1L"] > z["2L"] > z["4L"] > z["7"]
    assert z["7"] > z["8"]


def test_hilar_stations_sit_at_the_hilum(patient) -> None:
    """10R/10L lateral to the trachea at carina level, beside the main bronchi, not in the midline."""
    _, canvas, stations, _ = patient
    lumen = canvas.tissue == label("airway_lumen")
    t = {s.station: _centroid_lps(canvas, stations == s.label) for s in load_stations()}
    carina_z = t["7"][2] + 15
    for side, sign in (("R", -1), ("L", 1)):
        c = t[f"10{side}"]
        assert sign * (c[0] - t["7"][0]) > 15, f"10{side} not lateral to the subcarinal space"
        assert abs(c[2] - carina_z) < 45
        # some airway lumen (main/lobar bronchus) within 20 mm of the station centroid
        near = canvas.grid.lps_to_index(c)
        r = np.ceil(20.0 / np.asarray(canvas.grid.spacing)).astype(int)
        i, j, k = np.round(near).astype(int)
        assert lumen[k - r[2]:k + r[2] + 1, j - r[1]:j + r[1] + 1, i - r[0]:i + r[0] + 1].any()


def test_right_paratracheal_stations_are_right_of_the_left_tracheal_wall(patient) -> None:
    """Measured on the image: each slice's tracheal lumen gives the left wall; 2R/4R stay right of it."""
    _, canvas, stations, _ = patient
    lumen = canvas.tissue == label("airway_lumen")
    xs, _, _ = canvas.grid.axis_coordinates()
    table = by_name()
    checked = 0
    for name in ("2R", "4R"):
        for k in np.nonzero((stations == table[name].label).any(axis=(1, 2)))[0]:
            comps, n = ndimage.label(lumen[k])
            if n == 0:
                continue
            # the trachea: the lumen component closest to the station's slice centre line
            sizes = ndimage.sum(lumen[k], comps, range(1, n + 1))
            trachea = comps == (1 + int(np.argmax(sizes)))
            left_wall = xs[np.nonzero(trachea.any(axis=0))[0].max()] + 2.0  # lumen edge + wall
            station_x = xs[np.nonzero((stations[k] == table[name].label).any(axis=0))[0]]
            assert station_x.max() <= left_wall + canvas.grid.spacing[0], f"{name} crosses the left tracheal wall at slice {k}"
            checked += 1
    assert checked > 5
