"""Node candidates on the real chest CT of ../shared/data/real-ct (no PET there: CT candidates only), drawn for a reader.

`python -m bench.nodes.real_ct_nodes [--ct DIR] [--out bench/nodes/real_ct_nodes.png]` registers the atlas to
the CT as `nstage stations` does, reads the nodes of every station with a flat PET (so only the CT
finds candidates), writes the PNG (axial CT slices through the index nodes, each candidate
circled, its station and short axis written beside it; a zoom on the slice through each index node
and the slices above and below; coronal and sagittal planes through it) and bench/nodes/real_ct_nodes.json (the
candidates per station, and every index node with the CT numbers at its centre voxel, in a 2 mm
disc round its centre and in a box around it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]
REAL_CT = ROOT.parent / "shared" / "data" / "real-ct" / "Lung_Dx-A0001"


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from nstage.analysis.nodes import read_nodes
    from nstage.geometry import Grid
    from nstage.ingest.study import load_ct_volume
    from nstage.paths import atlas_dir
    from nstage.stationmap.atlas import load_atlases
    from nstage.stationmap.registration import map_stations
    from nstage.stations import load_stations

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", type=Path, default=REAL_CT)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "nodes" / "real_ct_nodes.png")
    a = ap.parse_args(argv)
    ct = load_ct_volume(a.ct)
    reg = map_stations(ct.array, ct.grid, load_atlases([atlas_dir()]))
    assert reg.labels is not None, reg.grade.reasons
    names = {s.label: s.station for s in load_stations()}
    flat = Grid((4, 4, 4), (200.0, 200.0, 200.0), tuple(np.asarray(ct.grid.origin) - 100.0))
    found = read_nodes(ct.array, ct.grid, np.zeros((4, 4, 4), np.float32), flat, reg.labels, names, None, None)
    index = [(st, sn.index_node) for st, sn in found.items() if sn.index_node is not None]
    rows = []
    for st, n in index:
        i, j, k = np.rint(ct.grid.lps_to_index(np.asarray(n.centre_lps))).astype(int)
        shell = ct.array[max(k - 1, 0):k + 2, max(j - 8, 0):j + 9, max(i - 8, 0):i + 9]
        jj, ii = np.ogrid[:ct.array.shape[1], :ct.array.shape[2]]
        disc = ((jj - j) * ct.grid.spacing[1]) ** 2 + ((ii - i) * ct.grid.spacing[0]) ** 2 <= 2.0**2
        rows.append({"station": st, **n.as_dict(), "hu_at_centre": float(ct.array[k, j, i]),
                     "hu_centre_mean_2mm": round(float(ct.array[k][disc].mean()), 1),  # a single voxel carries the full noise of the scan
                     "hu_shell_median": float(np.median(shell)), "slice": int(k)})
    _, jj, ii = np.nonzero(reg.labels)
    sx, sy, _ = ct.grid.spacing
    x0, x1 = (ii.min() - 10) * sx, (ii.max() + 10) * sx  # the mediastinum, with a margin
    y0, y1 = (jj.min() - 10) * sy, (jj.max() + 10) * sy
    nrows = max(1, min(len(rows), 12))
    fig, axes = plt.subplots(nrows, 6, figsize=(30, 5.0 * nrows), squeeze=False, gridspec_kw={"width_ratios": [1.6, 1, 1, 1, 1, 1]})
    for ax in np.ravel(axes):
        ax.axis("off")

    def draw(ax: Any, k: int) -> None:
        """Slice k with the station outlines and the candidates whose centre lies within a slice of it."""
        img = ct.array[k]
        ax.imshow(np.clip(img, -160, 240), cmap="gray", extent=(0, img.shape[1] * sx, img.shape[0] * sy, 0))
        ax.contour(np.arange(img.shape[1]) * sx, np.arange(img.shape[0]) * sy, reg.labels[k] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
        for st, sn in found.items():
            for n in sn.nodes:
                ci, cj, ck = ct.grid.lps_to_index(np.asarray(n.centre_lps))
                if abs(ck - k) > 1.0:
                    continue
                colour = "red" if n is sn.index_node else "cyan"
                ax.add_patch(plt.Circle((ci * sx, cj * sy), n.long_axis_mm / 2 + 1.5, fill=False, color=colour, linewidth=1.2))
                ax.text(ci * sx + n.long_axis_mm / 2 + 2, cj * sy, f"{st} {n.short_axis_mm:.0f}mm", color=colour, fontsize=9)

    sz = ct.grid.spacing[2]

    def reformat(ax_cor: Any, ax_sag: Any, row: dict[str, Any]) -> None:
        """Coronal and sagittal planes through an index node (superior up; the slices are thick): what it touches above and below."""
        ci, cj, ck = ct.grid.lps_to_index(np.asarray(row["centre_lps"]))
        i, j = int(round(ci)), int(round(cj))
        nz = ct.array.shape[0]
        for ax, plane, c, step, name in ((ax_cor, ct.array[:, j, :], ci, sx, "coronal (patient's right on the left)"),
                                         (ax_sag, ct.array[:, :, i], cj, sy, "sagittal (anterior on the left)")):
            plane = ndimage.gaussian_filter1d(plane.astype(np.float32), 1.0 / step, axis=1)  # in-plane noise of thin, tall pixels
            ax.imshow(np.clip(plane, -160, 240), cmap="gray", origin="lower", extent=(0, plane.shape[1] * step, 0, nz * sz), aspect="equal")
            ax.add_patch(plt.Circle((c * step, (ck + 0.5) * sz), row["long_axis_mm"] / 2 + 1.5, fill=False, color="red", linewidth=1.2))
            ax.set_xlim(c * step - 35, c * step + 35)
            ax.set_ylim((ck + 0.5) * sz - 35, (ck + 0.5) * sz + 35)
            ax.set_title(name, fontsize=10)

    for r, row in zip(axes, rows[:nrows]):
        k = row["slice"]
        ci, cj, _ = ct.grid.lps_to_index(np.asarray(row["centre_lps"]))
        draw(r[0], k)
        r[0].set_xlim(x0, x1)
        r[0].set_ylim(y1, y0)
        r[0].set_title(f"station {row['station']} index node, slice {k} (z {ct.grid.index_to_lps(np.array([0, 0, k]))[2]:.0f} mm)", fontsize=10)
        for ax, dk in zip(r[1:], (1, 0, -1)):  # above, through and below the node (+z is superior)
            if not 0 <= k + dk < ct.array.shape[0]:
                continue
            draw(ax, k + dk)
            ax.set_xlim(ci * sx - 25, ci * sx + 25)
            ax.set_ylim(cj * sy + 25, cj * sy - 25)
            ax.set_title(f"zoom, slice {k + dk} ({'above' if dk > 0 else 'below' if dk < 0 else 'centre'})", fontsize=10)
        reformat(r[4], r[5], row)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no index node in any station", ha="center", va="center", fontsize=14)
    fig.suptitle("Node candidates on the real CT (yellow: stations; red: index node; cyan: other candidates; CT only, no PET)", fontsize=11)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    out_json = a.out.with_suffix(".json")
    out_json.write_text(json.dumps({"machine": machine(), "ct": str(a.ct.relative_to(ROOT.parent)) if a.ct.is_relative_to(ROOT.parent) else a.ct.name,
                                    "registration": reg.status, "candidates_per_station": {st: sn.candidates for st, sn in found.items()},
                                    "index_nodes": rows}, indent=1) + "\n")
    print(f"{len(rows)} index nodes; {a.out}; {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
