"""The CPU side of the GPU check, after the device: carry the device's displacement fields through the
rest of the registration (grading, label transfer) exactly as `nstage run` would, and score them.

    python -m bench.stationmap.device.finish DIR DEVICE_OUT [--out bench/stationmap/registration_gpu.json]

DIR is bench.stationmap.device.prepare's folder; DEVICE_OUT what run.sh wrote under $OUT on the device
(gpu_registration.json and the fields). Each case is rendered again (the same seed gives the same
bytes), registered by `map_stations` with the torch backend whose result is the device's field (its
inputs are checked to be the very arrays the device registered), and its station map is scored
against the generator's truth and against the Elastix map of the same case. Targets (issue 19):
registration <= 2 s on the GPU; station Dice within 0.02 of Elastix's; median centroid error <= 3 mm;
no station missing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.stationmap.device.case_files import inputs_digest

ROOT = Path(__file__).resolve().parents[3]
TARGETS = {"registration_seconds_max": 2.0, "mean_station_dice_gap_max": 0.02, "median_centroid_error_mm_max": 3.0, "stations_missing_max": 0}


class FieldMismatch(Exception):
    """The device registered other inputs than the ones this replay is asked for."""


def replaying(field: np.ndarray, digest: str):  # noqa: ANN201 - a registration backend (see nstage.stationmap.registration.Backend)
    """A backend that returns `field` for the inputs whose digest is `digest`, and refuses any others."""

    def run(fixed, moving, grid, mask, folder, settings):  # noqa: ANN001, ANN202
        got = inputs_digest(np.asarray(fixed, np.float32), np.asarray(moving, np.float32), np.asarray(mask, bool))
        if got != digest:
            raise FieldMismatch(f"the inputs differ from the ones the device registered ({got[:12]} vs {digest[:12]})")
        if field.shape != tuple(grid.shape) + (3,):
            raise FieldMismatch(f"field shape {field.shape} does not fit the grid {grid.shape}")
        return field.astype(np.float64)

    return run


def finish_case(ref: dict[str, Any], ref_arrays: dict[str, np.ndarray], field: np.ndarray, atlases: list[Any], settings: Any) -> dict[str, Any]:
    from bench.stationmap.registration_bench import dice_per_station, station_scores
    from nstage.progress import StageTimer
    from nstage.stationmap.registration import map_stations
    from nstage.stations import load_stations
    from nstage.synth.case import render_case

    case = render_case(f"device{ref['seed']}", ref["seed"], 0, ref["preset"], "default", None, StageTimer())
    if not np.array_equal(case.stations, ref_arrays["truth"]):
        raise FieldMismatch(f"seed {ref['seed']}: the case rendered here differs from the prepared one")
    result = map_stations(case.hu, case.ct_grid, atlases, settings, backend="torch", run=replaying(field, ref["inputs_sha256"]))
    labels = {s.label: s.station for s in load_stations()}
    scores = station_scores(result.labels, case.stations, case.ct_grid.spacing, case.ct_grid.affine, labels) if result.labels is not None else {}
    missing = [labels[v] for v in labels if (case.stations == v).any() and (result.labels is None or not (result.labels == v).any())]
    elastix_scores = station_scores(ref_arrays["elastix"], case.stations, case.ct_grid.spacing, case.ct_grid.affine, labels)
    return {"seed": ref["seed"], "status": result.status, "reasons": result.grade.reasons, "stations": scores, "stations_missing": missing,
            "figures": result.figures(), "elastix_stations": elastix_scores, "elastix_status": ref["elastix"]["status"],
            "dice_torch_vs_elastix": dice_per_station(result.labels, ref_arrays["elastix"], labels) if result.labels is not None else {}}


def summarise(cases: list[dict[str, Any]], device: dict[str, Any]) -> dict[str, Any]:
    def mean_dice(key: str) -> float | None:
        v = [s["dice"] for c in cases for s in c[key].values()]
        return round(float(np.mean(v)), 3) if v else None

    errors = [s["centroid_error_mm"] for c in cases for s in c["stations"].values() if s["centroid_error_mm"] is not None]
    seconds = [d["seconds"] for d in device["cases"]]
    agree = [v for c in cases for v in c["dice_torch_vs_elastix"].values()]
    torch_dice, elastix_dice = mean_dice("stations"), mean_dice("elastix_stations")
    gap = None if torch_dice is None or elastix_dice is None else round(elastix_dice - torch_dice, 3)
    missing = sum(len(c["stations_missing"]) for c in cases)
    out = {"cases": len(cases), "device": device["device"].get("gpu") or "cpu (no GPU seen by torch)",
           "registration_seconds_median": round(float(np.median(seconds)), 3), "registration_seconds_max": round(float(np.max(seconds)), 3),
           "first_run_seconds": device["cases"][0].get("first_run_seconds"),
           "peak_gpu_memory_mib_max": max((d["peak_gpu_memory_mib"] or 0.0 for d in device["cases"]), default=None) or None,
           "mean_station_dice_torch": torch_dice, "mean_station_dice_elastix": elastix_dice, "mean_station_dice_gap_elastix_minus_torch": gap,
           "median_centroid_error_mm": round(float(np.median(errors)), 2) if errors else None, "stations_missing": missing,
           "dice_torch_vs_elastix_mean": round(float(np.mean(agree)), 3) if agree else None,
           "statuses": sorted({c["status"] for c in cases})}
    out["meets_targets"] = bool(device["device"].get("cuda_available") and out["registration_seconds_max"] <= TARGETS["registration_seconds_max"]
                                and gap is not None and gap <= TARGETS["mean_station_dice_gap_max"] and out["median_centroid_error_mm"] is not None
                                and out["median_centroid_error_mm"] <= TARGETS["median_centroid_error_mm_max"] and missing <= TARGETS["stations_missing_max"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("device_out", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "stationmap" / "registration_gpu.json")
    a = p.parse_args(argv)
    from bench.machine import machine
    from nstage import paths
    from nstage.progress import configure_logging
    from nstage.stationmap.atlas import load_atlases
    from nstage.stationmap.registration_settings import load_settings

    configure_logging()
    device = json.loads((a.device_out / "gpu_registration.json").read_text())
    settings, atlases = load_settings(), load_atlases([paths.atlas_dir()])
    cases = []
    for row in device["cases"]:
        ref = json.loads((a.dir / "reference" / f"{row['case']}.json").read_text())
        with np.load(a.dir / "reference" / f"{row['case']}.npz") as z:
            ref_arrays = {k: z[k] for k in z.files}
        with np.load(a.device_out / f"{row['case']}_field.npz") as z:
            field = z["field"]
        if ref["inputs_sha256"] != row["inputs_sha256"]:
            raise FieldMismatch(f"{row['case']}: the device registered other inputs than {a.dir} holds")
        cases.append(finish_case(ref, ref_arrays, field, atlases, settings))
        print(f"seed {ref['seed']}: {cases[-1]['status']}, torch vs Elastix Dice "
              f"{np.mean(list(cases[-1]['dice_torch_vs_elastix'].values())):.3f}, {row['seconds']:.2f} s on {row['device']}", flush=True)
    result = {"benchmark": "the torch registration backend on the device, scored on the CPU (bench/stationmap/device)", "targets": TARGETS,
              "device_record": device, "scored_on": machine(), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
              "summary": summarise(cases, device), "cases": cases}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
