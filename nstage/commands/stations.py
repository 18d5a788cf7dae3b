"""`nstage stations`: register the atlas to a CT and write its station map with the registration's quality."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nstage.commands.run import add_registration_argument
from nstage.errors import InputError

OUTPUTS = ("stations.nii.gz", "registration.json", "stations.png")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "stations",
        help="map the lymph node stations onto a CT (atlas registration)",
        description="Picks the CT series (from a study folder or a series folder), registers the atlas to it (landmark "
        "pre-alignment, then affine and B-spline with Elastix or the PyTorch backend: --registration) and writes DIR/stations.nii.gz (station labels of atlas/stations.json "
        "on the CT grid) and DIR/registration.json (status ok | suspect | failed, reasons, quality figures, timings). "
        "A failed registration writes no station map and ends with an error.",
    )
    s.add_argument("ct", help="study folder or CT series folder (DICOM)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--atlas", action="append", type=Path, default=None,
                   help="atlas folder with atlas.json (default: the shipped atlas); repeat to fuse several by majority vote")
    s.add_argument("--preview", action="store_true", help="also write DIR/stations.png (axial, coronal, sagittal cuts)")
    add_registration_argument(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage import paths
    from nstage.atomic_output import staged_output
    from nstage.geometry import save_nifti
    from nstage.ingest.study import load_ct_volume
    from nstage.progress import StageTimer
    from nstage.stationmap.atlas import load_atlases
    from nstage.stationmap.preview import write_station_preview
    from nstage.stationmap.registration import map_stations

    t0 = time.perf_counter()
    timer = StageTimer()
    folders = args.atlas or [paths.atlas_dir()]
    with timer.stage("load CT"):
        volume = load_ct_volume(args.ct)
    with timer.stage("load atlas"):
        atlases = load_atlases(folders)
    result = map_stations(volume.array, volume.grid, atlases, timer=timer, backend=args.registration)
    report = result.report()
    report["ct"] = {"series_uid": volume.series_uid, "description": volume.description, "shape": list(volume.grid.shape),
                    "spacing_mm": [round(v, 4) for v in volume.grid.spacing]}
    report["atlas_folders"] = [str(f) for f in folders]
    report["timings_s"] = {k: round(v, 2) for k, v in timer.timings.items()}
    report["total_s"] = round(time.perf_counter() - t0, 2)
    with staged_output(Path(args.out), stale=OUTPUTS) as tmp:
        if result.labels is not None:
            save_nifti(result.labels, volume.grid, tmp / "stations.nii.gz")
            if args.preview:
                write_station_preview(tmp / "stations.png", volume.array, volume.grid, result.labels,
                                      title=f"stations ({result.status})")
        (tmp / "registration.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    out = Path(args.out)
    if result.status == "failed":
        raise InputError(f"atlas registration failed ({'; '.join(result.grade.reasons) or 'see registration.json'}); "
                         f"no station map written; details in {out / 'registration.json'}")
    if result.status == "suspect":
        print(f"warning: registration suspect: {'; '.join(result.grade.reasons)}", file=sys.stderr)
    print(f"status: {result.status}; stations: {len(report['stations_found'])} of {len(report['stations_found']) + len(report['stations_missing'])}"
          f"{' (missing ' + ', '.join(report['stations_missing']) + ')' if report['stations_missing'] else ''}; "
          f"{report['total_s']:.0f} s; written: {out / 'stations.nii.gz'}, {out / 'registration.json'}")
    return 0
