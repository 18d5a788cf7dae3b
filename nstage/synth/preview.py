"""PNG views of a synthetic case so that a person can look at it: CT, PET MIP, stations, truth."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nstage.geometry import Grid, resample  # noqa: E402
from nstage.stations import load_stations  # noqa: E402

MALIGNANT, BENIGN = "#ff3030", "#40d040"


def _outline(ax: plt.Axes, labels2d: np.ndarray, truth: dict, names: dict[int, str]) -> None:
    """Station outlines and names on an image shown in index space (row index = image y)."""
    for lab in np.unique(labels2d[labels2d > 0]):
        name = names[int(lab)]
        colour = MALIGNANT if truth["stations"][name]["malignant"] else BENIGN
        ax.contour(labels2d == lab, [0.5], colors=colour, linewidths=0.8)
        jj, ii = np.nonzero(labels2d == lab)
        ax.text(ii.mean(), jj.mean(), name, color=colour, fontsize=7, ha="center", va="center", weight="bold")


def _centre_slice(mask: np.ndarray, axis_keep: int, default: int) -> int:
    other = tuple(a for a in range(3) if a != axis_keep)
    idx = np.nonzero(mask.any(axis=other))[0]
    return int(np.median(idx)) if idx.size else default


def write_preview(path: Path, ct_grid: Grid, hu: np.ndarray, stations: np.ndarray, pet_grid: Grid, suv: np.ndarray, truth: dict) -> None:
    """One PNG: axial CT through key stations, coronal CT, coronal PET MIP, fused axial, truth table.

    Radiological display: patient right on the image left, anterior up, head up.
    """
    names = {s.label: s.station for s in load_stations()}
    labels = {s.station: s.label for s in load_stations()}
    fig, axes = plt.subplots(2, 4, figsize=(20, 10.5), facecolor="black")
    for ax in axes.flat:
        ax.set_facecolor("black")
        ax.set_xticks([])
        ax.set_yticks([])
    zpos = ct_grid.slice_positions()[:, 2]
    for ax, key in zip(axes[0], ("2R", "4R", "7", "10R")):
        k = _centre_slice(stations == labels[key], 0, ct_grid.shape[0] // 2)
        ax.imshow(hu[k], cmap="gray", vmin=-160, vmax=240)
        _outline(ax, stations[k], truth, names)
        ax.set_title(f"CT axial z={zpos[k]:.0f} mm (through station {key})", color="w", fontsize=9)
    sx, _, sz = ct_grid.spacing
    jc = _centre_slice(stations == labels["7"], 1, ct_grid.shape[1] // 2)
    axes[1, 0].imshow(hu[:, jc, :], cmap="gray", vmin=-160, vmax=240, origin="lower", aspect=sz / sx)
    _outline(axes[1, 0], stations[:, jc, :], truth, names)
    axes[1, 0].set_title("CT coronal (stations: red malignant, green benign)", color="w", fontsize=9)
    st_pet = resample(stations, ct_grid, pet_grid, order=0)
    mip = suv.max(axis=1)
    psx, _, psz = pet_grid.spacing
    axes[1, 1].imshow(mip, cmap="gray_r", vmin=0, vmax=max(5.0, float(np.percentile(mip, 99.5))), origin="lower", aspect=psz / psx)
    proj = np.zeros(mip.shape, np.uint8)
    for j in range(st_pet.shape[1]):
        proj = np.where(proj == 0, st_pet[:, j, :], proj)
    _outline(axes[1, 1], proj, truth, names)
    axes[1, 1].set_title("PET MIP coronal, SUV 0-5 (station outlines projected)", color="w", fontsize=9)
    tz = truth["tumour"]["centre_lps"][2]
    k = int(np.clip(round((tz - ct_grid.origin[2]) / ct_grid.spacing[2]), 0, ct_grid.shape[0] - 1))
    one = Grid((1, ct_grid.shape[1], ct_grid.shape[2]), ct_grid.spacing, tuple(ct_grid.slice_positions()[k]))
    pet_slice = resample(suv, pet_grid, one, order=1)[0]
    axes[1, 2].imshow(hu[k], cmap="gray", vmin=-1000, vmax=300)
    axes[1, 2].imshow(np.ma.masked_less(pet_slice, 2.0), cmap="hot", vmin=0, vmax=8, alpha=0.65)
    axes[1, 2].set_title(f"PET/CT fused through the tumour ({truth['tumour']['lobe']}), SUV > 2", color="w", fontsize=9)
    _truth_table(axes[1, 3], truth)
    fig.suptitle(f"{truth['case']}   N stage {truth['n_stage']['tnm8']} / {truth['n_stage']['tnm9']} (TNM 8 / 9)   tumour side {truth['tumour_side']}   SYNTHETIC",
                 color="w", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=70, facecolor="black")
    plt.close(fig)


def _truth_table(ax: plt.Axes, truth: dict) -> None:
    ax.axis("off")
    lines = ["station  truth      nodes  max SA  node SUV", ""]
    for name, s in truth["stations"].items():
        call = "MALIGNANT" if s["malignant"] else "benign"
        lines.append(f"{name:>5}    {call:<9}  {s['n_nodes']:>3}  {s['max_short_axis_mm']:>6.1f}  {s['max_node_suv']:>6.2f}")
    lines += ["", f"patient {truth['patient']['sex']} {truth['patient']['age_years']} y {truth['patient']['weight_kg']} kg",
              f"CT {'contrast' if truth['ct']['contrast'] else 'no contrast'}, PET {truth['pet']['vendor']} FWHM {truth['pet']['fwhm_mm']} mm"]
    ax.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=8, color="w", va="top", transform=ax.transAxes)
