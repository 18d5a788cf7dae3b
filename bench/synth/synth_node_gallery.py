"""Synthetic node signs as a reader sees them: a necrotic metastasis, a fatty-hilum benign node, a calcified node, bilateral granulomatous disease.

`python -m bench.synth.synth_node_gallery [--seed 16500] [--out bench/synth/synth_node_gallery.png]` finds,
by drawing the disease model only (fast), the first case of the seed with each sign, renders those
cases at the `clinical` preset and writes one PNG: per sign an axial CT crop (mediastinal window)
and the same crop fused with PET, centred on the node (for a fatty hilum on the slice with the most
fat inside the node), with the truth written under it; for the
granulomatous case a coronal PET MIP with the avid benign nodes marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CROP_MM = 48.0

Finder = Callable[[Any], Any]


def _first(seed: int, pick: Finder, start: int = 0, limit: int = 400) -> tuple[int, Any]:
    from nstage.synth.case import case_disease

    for i in range(start, start + limit):
        found = pick(case_disease(seed, i))
        if found is not None:
            return i, found
    raise SystemExit(f"error: no case among {limit} of seed {seed} has the sign")


def _largest(d: Any, test: Callable[[Any], bool]) -> Any:
    nodes = [n for n in d.nodes if test(n)]
    return max(nodes, key=lambda n: n.short_axis_mm) if nodes else None


SIGNS: dict[str, Finder] = {
    "necrotic metastasis": lambda d: _largest(d, lambda n: n.necrotic and n.short_axis_mm >= 15),
    "fatty-hilum benign node": lambda d: _largest(d, lambda n: n.fatty_hilum and not n.malignant and n.short_axis_mm >= 10),
    "calcified node": lambda d: _largest(d, lambda n: n.calcified and n.short_axis_mm >= 8),
}


def _bilateral(d: Any) -> Any:
    avid = [n for n in d.nodes if n.kind == "reactive"]
    sides = {n.station[-1] for n in avid if n.station[-1] in "RL"}
    return avid if d.granulomatous and sides == {"R", "L"} and len(avid) >= 4 else None


def _node_truth(truth: dict[str, Any], station: str, short_axis: float) -> dict[str, Any]:
    return min((n for n in truth["nodes"] if n["station"] == station), key=lambda n: abs(n["short_axis_mm"] - short_axis))


def _crop(rc: Any, centre_lps: np.ndarray, instance: int, hilum: bool, ax_ct: Any, ax_fused: Any) -> None:
    from nstage.geometry import resample, sub_grid

    grid = rc.ct_grid
    i, j, k = np.rint(grid.lps_to_index(centre_lps)).astype(int)
    if hilum:  # the slice a reader scrolls to: where the most fat lies inside the node
        k = int(np.argmax(((rc.instance == instance) & (rc.hu < -30)).sum(axis=(1, 2))))
    half = int(CROP_MM / 2 / grid.spacing[0])
    box = (slice(k, k + 1), slice(max(j - half, 0), j + half), slice(max(i - half, 0), i + half))
    ct = rc.hu[box][0]
    pet = resample(rc.suv, rc.pet_grid, sub_grid(grid, box), order=1)[0]
    ax_ct.imshow(ct, cmap="gray", vmin=-160, vmax=240)
    ax_fused.imshow(ct, cmap="gray", vmin=-160, vmax=240)
    ax_fused.imshow(np.ma.masked_less(pet, 1.0), cmap="hot", vmin=0, vmax=max(6.0, float(pet.max())), alpha=0.55)
    ax_fused.contour(rc.instance[box][0] == instance, [0.5], colors="#30c0ff", linewidths=1.0)


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nstage.progress import StageTimer
    from nstage.synth.case import render_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=16500)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "synth" / "synth_node_gallery.png")
    a = ap.parse_args(argv)
    fig, axes = plt.subplots(2, 4, figsize=(20, 10.5), facecolor="black")
    for ax in axes.flat:
        ax.set_facecolor("black")
        ax.set_xticks([])
        ax.set_yticks([])
    for col, (name, pick) in enumerate(SIGNS.items()):
        index, node = _first(a.seed, pick)
        rc = render_case(f"case_{index:04d}", a.seed, index, "clinical", "default", None, StageTimer())
        t = _node_truth(rc.truth, node.station, node.short_axis_mm)
        _crop(rc, np.array(t["centre_lps"]), t["instance"], bool(t["fatty_hilum"]), axes[0, col], axes[1, col])
        axes[0, col].set_title(f"{name}: case {index} station {t['station']}", color="w", fontsize=10)
        axes[1, col].set_title(
            f"SA {t['short_axis_mm']:.1f} mm, HU mean {t['hu_mean']}, tissue SUV {t['suv']:.1f}, "
            f"{'contrast' if rc.truth['ct']['contrast'] else 'no contrast'}", color="w", fontsize=9)
    index, avid = _first(a.seed, _bilateral)
    rc = render_case(f"case_{index:04d}", a.seed, index, "clinical", "default", None, StageTimer())
    mip = rc.suv.max(axis=1)
    body = np.nonzero(mip.max(axis=0) > 0.3)[0]
    i0, i1 = int(body.min()), int(body.max()) + 1
    sx, _, sz = rc.pet_grid.spacing
    axes[0, 3].imshow(mip[:, i0:i1], cmap="gray_r", vmin=0, vmax=6, origin="lower", aspect=sz / sx)
    for n in rc.truth["nodes"]:
        if n["kind"] == "reactive":
            i, _, k = rc.pet_grid.lps_to_index(np.array(n["centre_lps"]))
            axes[0, 3].plot(i - i0, k, "o", mfc="none", mec="#20a020", ms=12)
            axes[0, 3].text(i - i0 + 5, k, n["station"], color="#20a020", fontsize=9, weight="bold")
    axes[0, 3].set_title(f"bilateral granulomatous: case {index}, coronal PET MIP (patient right on the left)", color="w", fontsize=10)
    stations = sorted({n.station for n in avid})
    axes[1, 3].text(0.05, 0.6, "FDG-avid benign stations:\n" + ", ".join(stations) + "\n\n(green circles: reactive nodes;\nno malignant station among them)",
                    color="w", fontsize=11, transform=axes[1, 3].transAxes, va="top")
    fig.suptitle(f"Synthetic node signs at clinical resolution (seed {a.seed}); {CROP_MM:.0f} mm crops, CT W400/L40, PET SUV 1-6, node outline in blue", color="w", fontsize=12)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80, facecolor="black")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
