"""The CPU side of the GPU check, before the device: render cases, register them with Elastix, and keep
the torch backend's inputs for the device.

    python -m bench.stationmap.device.prepare DIR [--preset clinical] [--cases 3] [--first-seed 910001]
                                       [--torch-iterations AFFINE BSPLINE]   (tiny runs: e.g. "10,0" "10,5")

Each case is rendered in memory (seeds 910001+, not used in development) and registered with the
default atlas by `map_stations` with Elastix, as `nstage run` does on the CPU; the inputs Elastix was
given (thorax crop of the working copy, pre-aligned atlas CT, metric mask; all a backend sees) are
saved as DIR/inputs/case_<seed>.npz/.json with the shipped torch settings, and the Elastix station
map and the generator's truth as DIR/reference/case_<seed>.npz/.json. DIR/inputs is what the device needs
(carry it with the wheels of DIR/wheels, see run.sh); DIR/reference stays here for bench.stationmap.device.finish.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.stationmap.device.case_files import save_inputs


def prepare_case(seed: int, preset: str, atlases: list[Any], settings: Any, root: Path) -> dict[str, Any]:
    """Render, register with Elastix (recording its inputs), and write the case's input and reference files."""
    from nstage.progress import StageTimer
    from nstage.stationmap.registration import map_stations, run_elastix
    from nstage.synth.case import render_case

    case = render_case(f"device{seed}", seed, 0, preset, "default", None, StageTimer())
    name = f"case_{seed}"
    seen: dict[str, Any] = {}

    def recording_elastix(fixed, moving, grid, mask, folder, s):  # noqa: ANN001, ANN202 - run_elastix's signature
        t0 = time.perf_counter()
        field = run_elastix(fixed, moving, grid, mask, folder, s)
        seen["elastix_seconds"] = time.perf_counter() - t0
        seen["digest"] = save_inputs(root / "inputs" / f"{name}.npz", fixed, moving, grid, mask, s.torch, s.window_hu, s.threads,
                                     {"seed": seed, "preset": preset})
        return field

    timer = StageTimer()
    t0 = time.perf_counter()
    result = map_stations(case.hu, case.ct_grid, atlases, settings, timer=timer, backend="elastix", run=recording_elastix)
    if "digest" not in seen:
        raise RuntimeError(f"seed {seed}: the registration stopped before Elastix ran ({result.status}: {result.grade.reasons})")
    labels = result.labels if result.labels is not None else np.zeros(case.ct_grid.shape, np.uint8)
    np.savez_compressed(root / "reference" / f"{name}.npz", elastix=labels.astype(np.uint8), truth=case.stations.astype(np.uint8))
    record = {"seed": seed, "preset": preset, "inputs_sha256": seen["digest"], "ct_shape": list(case.ct_grid.shape),
              "ct_spacing_mm": list(case.ct_grid.spacing), "elastix": {"status": result.status, "reasons": result.grade.reasons,
              "backend_seconds": round(seen["elastix_seconds"], 2), "map_stations_seconds": round(time.perf_counter() - t0, 2),
              "stage_seconds": {k: round(v, 2) for k, v in timer.timings.items()}}}
    (root / "reference" / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--preset", default="clinical", choices=["small", "clinical"])
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=910001)
    p.add_argument("--torch-iterations", nargs=2, metavar=("AFFINE", "BSPLINE"),
                   help="comma-separated iterations per level for the affine and B-spline stages (tiny test runs)")
    a = p.parse_args(argv)
    from nstage import paths
    from nstage.progress import configure_logging
    from nstage.stationmap.atlas import load_atlases
    from nstage.stationmap.registration_settings import load_settings

    configure_logging()
    settings = load_settings()
    if a.torch_iterations:
        aff, bsp = (tuple(int(v) for v in x.split(",")) for x in a.torch_iterations)
        settings = replace(settings, torch=replace(settings.torch, levels=len(bsp), affine_iterations=aff, bspline_iterations=bsp))
        settings.torch.check()
    for sub in ("inputs", "reference"):
        (a.dir / sub).mkdir(parents=True, exist_ok=True)
    atlases = load_atlases([paths.atlas_dir()])
    for seed in range(a.first_seed, a.first_seed + a.cases):
        r = prepare_case(seed, a.preset, atlases, settings, a.dir)
        print(f"seed {seed}: Elastix {r['elastix']['status']}, {r['elastix']['backend_seconds']} s; inputs {r['inputs_sha256'][:12]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
