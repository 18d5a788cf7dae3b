"""`nstage atlas`: build the default atlas, or check an atlas folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("atlas", help="build the default station atlas, or check an atlas folder")
    verbs = s.add_subparsers(dest="atlas_command", required=True)
    b = verbs.add_parser("build", help="render the default atlas from the generator's reference anatomy (config/atlas_build.json)")
    b.add_argument("--out", type=Path, default=None, help="atlas folder to write (default: the shipped atlas/)")
    b.set_defaults(func=run_build)
    c = verbs.add_parser("check", help="read and validate atlas folders (atlas.json, CT, label map, name table) and list them")
    c.add_argument("folders", type=Path, nargs="+")
    c.set_defaults(func=run_check)


def run_build(args: argparse.Namespace) -> int:
    from nstage import paths
    from nstage.synth.reference_atlas import build_default_atlas

    out = args.out or paths.atlas_dir()
    manifest = build_default_atlas(out)
    for entry in manifest["atlases"]:
        for key in ("ct", "labels"):
            f = Path(out) / entry[key]
            print(f"{f}: {f.stat().st_size / 1e6:.2f} MB")
    print(f"{Path(out) / 'atlas.json'}: written")
    return 0


def run_check(args: argparse.Namespace) -> int:
    import numpy as np

    from nstage.stationmap.atlas import load_atlases
    from nstage.stations import by_label

    names = by_label()
    for a in load_atlases(list(args.folders)):
        present = [names[int(v)].station for v in np.unique(a.labels) if v]
        print(f"{a.name} ({a.source}): CT {a.ct.shape} at {tuple(round(s, 2) for s in a.ct_grid.spacing)} mm, "
              f"labels {a.labels.shape} at {tuple(round(s, 2) for s in a.label_grid.spacing)} mm, "
              f"{len(present)} stations: {', '.join(present)}")
    return 0
