"""Which lung holds the primary tumour, found on PET/CT: the hottest FDG-avid lesion in the lung
envelope, away from the lymph node stations (so hilar nodes are not mistaken for it).

Works on the PET grid. The lungs are those the registration's landmark finder sees on the CT (air
inside the body), carried onto the PET grid: a PET field of view longer or wider than the CT's
leaves them unchanged. LPS: x grows to the
patient's left, so the right lung is the one with the smaller x.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from nstage.analysis.config import analysis_config
from nstage.geometry import Grid, mask_box, resample
from nstage.stationmap.registration import find_lungs


@dataclass(frozen=True)
class Lesion:
    side: str
    suv_max: float
    volume_ml: float
    centre_lps: tuple[float, float, float]
    in_lung: bool = True  # its hot region lies mostly inside the lung envelope (not the lung-side edge of something outside)
    lung_contact: float = 1.0  # the share of the lungs (aerated, on the CT) in a shell around its region at half its SUVmax
    station_share: float = 0.0  # the share of its region at half its SUVmax (grown anywhere) in the stations' margin


@dataclass(frozen=True)
class TumourSide:
    side: str | None  # "R", "L" or None (unknown)
    source: str  # "user", "auto" or "not found"
    primary: Lesion | None = None
    candidates: tuple[Lesion, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)
    faint: bool = False  # the side came from the second reading, at the blood pool: a faint lesion a reader should check

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    sx, sy, sz = spacing
    n = [max(1, int(round(radius_mm / s))) for s in (sz, sy, sx)]
    k, j, i = np.meshgrid(*(np.arange(-m, m + 1) for m in n), indexing="ij")
    return ((k * sz) ** 2 + (j * sy) ** 2 + (i * sx) ** 2) <= radius_mm**2


def lungs_on(target: Grid, lungs: tuple[np.ndarray, Grid]) -> np.ndarray:
    """A lung mask (on its own grid) carried onto `target`; nothing outside its grid."""
    mask, grid = lungs
    return resample(mask.astype(np.uint8), grid, target, order=0, fill=0) > 0


def lung_envelope(lungs: np.ndarray, grid: Grid, closing_mm: float) -> np.ndarray:
    """Lungs closed morphologically and filled slice by slice: lesions inside the lungs belong to it.

    Computed in the lungs' box grown by the ball (nothing beyond it can join; the same mask as over the whole PET
    field, whose width is often three times the chest's, and 5-8x faster)."""
    out = lungs.copy()
    ball = _ball(closing_mm, grid.spacing)
    box = mask_box(lungs, [n // 2 + 1 for n in ball.shape])
    if box is None:
        return out
    closed = ndimage.binary_closing(lungs[box], structure=ball, iterations=1, border_value=0)
    out[box] |= np.stack([ndimage.binary_fill_holes(s) for s in closed])
    return out


def _grown(suv: np.ndarray, allowed: np.ndarray, pieces: np.ndarray, idx: int, box: tuple[slice, ...], level: float,
           grid: Grid, margin_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """The connected voxels of SUV >= `level` in `allowed` that touch piece `idx`, looked for within `margin_mm` of the
    piece's box: (the crop, the mask within it)."""
    pad = [int(np.ceil(margin_mm / s)) for s in (grid.spacing[2], grid.spacing[1], grid.spacing[0])]
    crop = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, suv.shape))
    lab, _ = ndimage.label(allowed[crop] & (suv[crop] >= level))
    ids = np.unique(lab[pieces[crop] == idx])
    return crop, np.isin(lab, ids[ids > 0])


@dataclass(frozen=True)
class _Scene:
    """The masks on the PET grid that every hot piece is judged against."""
    suv: np.ndarray
    grid: Grid
    envelope: np.ndarray  # the lungs, closed and filled
    near_station: np.ndarray  # the station regions plus a margin
    lung_not_station: np.ndarray  # envelope & ~near_station: where a lesion's volume is measured
    regions: np.ndarray  # labelled hot regions anywhere outside the stations
    region_voxels: np.ndarray  # per region label: its voxels
    region_inside: np.ndarray  # per region label: its voxels inside the envelope
    x_mid: float  # the midline between the lungs (LPS x): the mediastinum
    lungs: np.ndarray  # the lungs themselves (aerated, on the CT)

    def outside_ml(self, label: int) -> float | None:
        """The volume of hot region `label` outside the lung envelope when the region lies mostly outside it; None
        when it lies mostly inside (a lesion of the lung itself)."""
        inside, total = int(self.region_inside[label]), int(self.region_voxels[label])
        return (total - inside) * self.grid.voxel_volume_ml if inside * 2 < total else None


def lungs_midline(lungs: np.ndarray, grid: Grid, cfg: dict) -> float:
    """The LPS x between the two lungs: where the fewest lung voxels lie (the mediastinum), searched between the
    lungs' own percentiles of x. The median of the lungs' x lies well inside the larger right lung."""
    xs = grid.index_to_lps(np.argwhere(lungs)[:, ::-1])[:, 0]
    lo, hi = np.percentile(xs, cfg["midline_search_percentiles"])
    step = float(cfg["midline_bin_mm"])
    edges = np.arange(xs.min(), xs.max() + 2 * step, step)
    counts = ndimage.gaussian_filter1d(np.histogram(xs, edges)[0].astype(float), float(cfg["midline_smoothing_mm"]) / step)
    centres = 0.5 * (edges[1:] + edges[:-1])
    band = (centres >= lo) & (centres <= hi)
    return float(centres[band][np.argmin(counts[band])]) if band.any() else float(np.median(xs))


def _scene(suv: np.ndarray, grid: Grid, envelope: np.ndarray, near_station: np.ndarray, hot_anywhere: np.ndarray,
           lungs: np.ndarray, x_mid: float) -> _Scene:
    regions, n = ndimage.label(hot_anywhere)
    return _Scene(suv, grid, envelope, near_station, envelope & ~near_station, regions, np.bincount(regions.ravel(), minlength=n + 1),
                  np.bincount(regions[envelope], minlength=n + 1),
                  x_mid, lungs)


def _lesion(scene: _Scene, pieces: np.ndarray, idx: int, box: tuple[slice, ...], cfg: dict) -> Lesion | None:
    """The lesion a hot piece inside the envelope stands for; None for an organ's sliver, a piece too small, or
    organ spill."""
    m = pieces[box] == idx
    voxel_ml = scene.grid.voxel_volume_ml
    hot_ml = float(m.sum()) * voxel_ml
    outside = scene.outside_ml(int(scene.regions[box][m][0]))
    if hot_ml < float(cfg["organ_wall_max_ml"]) and outside is not None and outside >= float(cfg["organ_min_ml"]):
        return None  # a sliver of a hot organ outside the lungs (the heart wall where the lingula wraps the apex)
    peak = float(scene.suv[box][m].max())
    level, search = float(cfg["lesion_edge_fraction"]) * peak, float(cfg["lesion_search_mm"])
    _, lesion = _grown(scene.suv, scene.lung_not_station, pieces, idx, box, level, scene.grid, search)
    vol = float(lesion.sum()) * voxel_ml
    if vol < float(cfg["lesion_min_volume_ml"]):
        return None
    crop, edge = _grown(scene.suv, ~scene.near_station, pieces, idx, box, level, scene.grid, search)
    if hot_ml < float(cfg["lesion_min_volume_ml"]):  # a faint piece: its edge must lie in the lung, not run into an organ
        if int((edge & ~scene.envelope[crop]).sum()) >= int((edge & scene.envelope[crop]).sum()):
            return None
    shell = ndimage.binary_dilation(edge, structure=_ball(float(cfg["contact_shell_mm"]), scene.grid.spacing)) & ~edge
    contact = float(scene.lungs[crop][shell].mean()) if shell.any() else 0.0
    near, whole = _grown(scene.suv, np.broadcast_to(True, scene.suv.shape), pieces, idx, box, level, scene.grid, search)
    share = float((whole & scene.near_station[near]).sum()) / max(1, int(whole.sum()))
    centre = scene.grid.index_to_lps((np.argwhere(m).mean(axis=0) + np.array([b.start for b in box]))[::-1])
    return Lesion("R" if centre[0] < scene.x_mid else "L", peak, round(vol, 2), tuple(round(float(v), 1) for v in centre),
                  outside is None, round(contact, 3), round(share, 3))


def _lesions_at(threshold: float, suv: np.ndarray, grid: Grid, envelope: np.ndarray, near_station: np.ndarray,
                lungs: np.ndarray, x_mid: float, cfg: dict) -> list[Lesion]:
    """Every lesion of the lung envelope whose hot pieces reach `threshold`, hottest first."""
    hot_anywhere = ~near_station & (suv >= threshold)
    pieces, _ = ndimage.label(envelope & hot_anywhere)
    scene = _scene(suv, grid, envelope, near_station, hot_anywhere, lungs, x_mid)
    found = (_lesion(scene, pieces, idx, box, cfg) for idx, box in enumerate(ndimage.find_objects(pieces), start=1))
    return sorted((f for f in found if f is not None), key=lambda f: -f.suv_max)


def _aerated_around(lesion: Lesion, cfg: dict) -> bool:
    """Lung on the CT around it, as around a lesion of the lung; not the surface of an organ the envelope takes in
    (the heart's apex where the lingula wraps it)."""
    return lesion.lung_contact >= float(cfg["organ_max_lung_contact"])


def _of_the_lung(lesion: Lesion, cfg: dict) -> bool:
    """A lesion of the lung itself: aerated lung around it, its hot region mostly in the envelope and not mostly in
    the stations' margin (the far edge of a hot node beside a station the registration did not cover wholly)."""
    return _aerated_around(lesion, cfg) and lesion.in_lung and lesion.station_share < float(cfg["node_edge_min_station_share"])


def find_tumour_side(hu: np.ndarray, ct_grid: Grid, suv: np.ndarray, pet_grid: Grid, stations: np.ndarray,
                     blood_pool_suv: float | None = None, lungs: tuple[np.ndarray, Grid] | None = None) -> TumourSide:
    """The side of the primary tumour from the images (no user input).

    `lungs`: the patient's lung mask and its grid as the registration found it (StationResult.lungs);
    found here the same way when not given.
    """
    cfg = analysis_config()["tumour_side"]
    lungs = lungs_on(pet_grid, lungs if lungs is not None else find_lungs(hu, ct_grid))
    if lungs.sum() * pet_grid.voxel_volume_ml < 500:
        return TumourSide(None, "not found", reasons=("no lungs found on the CT (less than 500 ml of air inside the body)",))
    envelope = lung_envelope(lungs, pet_grid, float(cfg["lung_closing_mm"]))
    x_mid = lungs_midline(lungs, pet_grid, cfg)
    near_station = ndimage.binary_dilation(resample(stations, ct_grid, pet_grid, order=0) > 0, structure=_ball(float(cfg["station_margin_mm"]), pet_grid.spacing))
    threshold = float(cfg["lesion_min_suv"])
    if blood_pool_suv is not None:
        threshold = max(threshold, float(cfg["lesion_min_blood_pool_ratio"]) * blood_pool_suv)
    lesions = _lesions_at(threshold, suv, pet_grid, envelope, near_station, lungs, x_mid, cfg)
    faint = None
    if not any(_aerated_around(l, cfg) for l in lesions) and blood_pool_suv is not None:
        # nothing hot with lung around it: read the lungs again as a reader reads a nodule, avid above the blood pool
        level = max(float(cfg["faint_min_suv"]), float(cfg["faint_blood_pool_ratio"]) * blood_pool_suv)
        # near the blood pool's own level, vessels at the lungs' apex and hilum reach it too: only a nodule with mostly
        # lung around it counts in this reading
        again = [l for l in (_lesions_at(level, suv, pet_grid, envelope, near_station, lungs, x_mid, cfg) if level < threshold else [])
                 if l.lung_contact >= float(cfg["faint_min_lung_contact"])]
        if again:
            lesions, faint = again, level
    if not lesions:
        return TumourSide(None, "not found", reasons=(f"no FDG-avid lesion (SUV >= {threshold:.2f}) in either lung outside the node stations",))
    # the lung's own lesions first; then those with lung around them whose hot region lies mostly outside the envelope
    # or in the stations' margin (a tumour bulging out of the lung stands alone); the surface of an organ last
    # (in the reading at the blood pool every lesion has mostly lung around it: there a primary bulging out of the
    # envelope is the lung's own as much as a focus inside it, and only an organ's surface or a node's edge come after)
    own = (lambda l: _aerated_around(l, cfg) and l.station_share < float(cfg["node_edge_min_station_share"])) if faint is not None \
        else (lambda l: _of_the_lung(l, cfg))
    tiers = ([l for l in lesions if own(l)], [l for l in lesions if _aerated_around(l, cfg)], lesions)
    first = next(t for t in tiers if t)
    best = first[0]
    other = next((l for l in first if l.side != best.side), None)
    if other is not None and best.suv_max < float(cfg["min_side_ratio"]) * other.suv_max:
        reading = "" if faint is None else \
            f" in the reading above the blood pool (no lesion with lung around it reached SUV {threshold:.2f}; read at SUV >= {faint:.2f})"
        return TumourSide(None, "not found", None, tuple(lesions), (
            f"lesions in both lungs of similar avidity (SUVmax {best.suv_max:.1f} {best.side}, {other.suv_max:.1f} {other.side})"
            f"{reading}: side undecided",))
    kind = "hottest lung lesion outside the node stations" if faint is None else \
        f"no lesion with lung around it reached SUV {threshold:.2f}; hottest lung lesion above the blood pool (SUV >= {faint:.2f})"
    return TumourSide(best.side, "auto", best, tuple(lesions), (
        f"{kind}: SUVmax {best.suv_max:.1f}, {best.volume_ml:.1f} ml, {'right' if best.side == 'R' else 'left'} lung",), faint is not None)
