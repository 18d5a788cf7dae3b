"""A PNG to check a station map by eye: axial slices, a coronal and a sagittal cut, station outlines.

Images are shown in radiological convention (patient's left on the image's right, anterior up,
head up), resampled to an axis-aligned grid around the stations whatever the CT's orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstage.geometry import Grid, corners_lps, resample
from nstage.stations import load_stations

MARGIN_MM = 35.0
SPACING_MM = 1.0


def write_station_preview(path: Path, hu: np.ndarray, grid: Grid, labels: np.ndarray, title: str = "", n_axial: int = 6,
                          dpi: int = 80) -> None:
    """Write `path` (PNG): `n_axial` axial slices through the stations plus coronal and sagittal cuts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    k, j, i = np.nonzero(labels)
    if k.size == 0:
        raise ValueError("the station map is empty: nothing to preview")
    pts = grid.index_to_lps(np.stack([i, j, k], axis=1).astype(float))
    c = corners_lps(grid)
    lo = np.maximum(pts.min(axis=0) - MARGIN_MM, c.min(axis=0))
    hi = np.minimum(pts.max(axis=0) + MARGIN_MM, c.max(axis=0))
    z_step = min(float(np.abs(grid.direction @ np.asarray(grid.spacing)).max()), 3.0)
    view = Grid.covering(lo, hi, (SPACING_MM, SPACING_MM, z_step))
    ct = resample(hu, grid, view, order=1, fill=-1000.0)
    lab = resample(labels, grid, view, order=0, fill=0)
    table = {s.label: s.station for s in load_stations()}
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    cmap = ListedColormap(colours)

    kz = np.flatnonzero(lab.any(axis=(1, 2)))
    picks = np.unique(np.linspace(kz.min(), kz.max(), n_axial + 2)[1:-1].round().astype(int))
    ncol = 4
    nrow = int(np.ceil((len(picks) + 2) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.2 * nrow))
    axes = np.atleast_1d(axes).ravel()
    _, _, zs = view.axis_coordinates()
    for ax, kk in zip(axes, picks):
        _panel(ax, ct[kk], lab[kk], table, cmap, aspect=1.0)
        ax.set_title(f"axial z = {zs[kk]:.0f} mm", fontsize=9)
    jc = int(np.median(np.nonzero(lab)[1]))
    ic = int(np.median(np.nonzero(lab)[2]))
    _panel(axes[len(picks)], ct[::-1, jc, :], lab[::-1, jc, :], table, cmap, aspect=z_step / SPACING_MM)
    axes[len(picks)].set_title("coronal (head up, patient left on the right)", fontsize=9)
    _panel(axes[len(picks) + 1], ct[::-1, :, ic], lab[::-1, :, ic], table, cmap, aspect=z_step / SPACING_MM)
    axes[len(picks) + 1].set_title("sagittal (head up, anterior on the left)", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title or "stations", fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _panel(ax, ct: np.ndarray, lab: np.ndarray, table: dict[int, str], cmap, aspect: float) -> None:
    """One image with soft-tissue window, station outlines and station names at their centres."""
    from scipy import ndimage

    ax.imshow(ct, cmap="gray", vmin=-300, vmax=300, aspect=aspect, interpolation="nearest")
    for value in np.unique(lab):
        if value == 0:
            continue
        m = lab == value
        colour = cmap((int(value) - 1) % 20)
        ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.0)
        cy, cx = ndimage.center_of_mass(m)
        ax.text(cx, cy, table.get(int(value), str(value)), color=colour, fontsize=7, ha="center", va="center", weight="bold")
