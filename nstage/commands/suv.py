"""`nstage suv`: a PET series folder -> SUV volume (NIfTI) and a JSON summary on stdout."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from nstage.ingest.suv import SUV_TYPES


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "suv",
        help="convert a PET series to SUV (vendor-neutral rules)",
        description="Writes the SUV volume (float32 NIfTI, RAS affine) and prints one JSON object: suv_type, units (the "
        "series' Units), suv_units, decay_correction, scale_factor (number, or list per slice, multiplying the rescaled "
        "stored values), and what was used (times, dose, weight, corrections made).",
    )
    s.add_argument("pet_series_dir", help="folder with the PET series (or a study folder: the attenuation-corrected PET is used)")
    s.add_argument("--out", required=True, help="output NIfTI file (.nii.gz)")
    s.add_argument("--suv-type", default="bw", choices=list(SUV_TYPES), help="normalisation: body weight (default), lean body mass "
                   "(James), lean body mass (Janmahasatian), body surface area, ideal body weight")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nstage.geometry import save_nifti
    from nstage.ingest.study import load_pet_series

    pet = load_pet_series(Path(args.pet_series_dir), args.suv_type)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix or ".nii.gz"
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent)
    os.close(fd)
    try:
        save_nifti(pet.array, pet.grid, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    summary = {
        **pet.suv.as_dict(),
        "series_instance_uid": pet.series_uid,
        "shape": list(pet.grid.shape),
        "spacing_mm": list(pet.grid.spacing),
        "suv_max": float(pet.array.max()),
        "out": str(out),
    }
    print(json.dumps(summary))
    return 0
