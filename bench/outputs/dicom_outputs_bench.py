"""Time writing all DICOM outputs (SEG, TID 1500 SR, Encapsulated PDF) for one `clinical` case.

Usage: python -m bench.outputs.dicom_outputs_bench [--seed S] [--repeats N] [--out bench/outputs/dicom_outputs.json]

One clinical case is synthesised (`nstage synth`, not timed); its true station map and a result
dict built from truth.json (as in tests/outputs/test_dicom_outputs.py) are handed to
`write_dicom_outputs` with a one-page PDF. The wall and CPU time of the call (reading CT/PET headers,
SEG, SR, PDF, writing the files) are measured `repeats` times, BINARY and LABELMAP. Target (issue 6):
< 5 s per call for BINARY on this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 5.0


def run(seed: int, repeats: int) -> dict[str, Any]:
    from bench.machine import machine
    from nstage.geometry import load_nifti
    from nstage.ingest.study import load_study
    from nstage.outputs.dicom import write_dicom_outputs
    from tests.outputs.test_dicom_outputs import pdf_bytes, result_from_truth

    work = Path(tempfile.mkdtemp(prefix="nstage-dicom-bench-"))
    try:
        subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(work / "c"), "--cases", "1", "--seed", str(seed), "--preset", "clinical"],
                       check=True, capture_output=True, cwd=ROOT)
        case = work / "c" / "case_0000"
        study = load_study(case / "dicom")
        labels = load_nifti(case / "truth_stations.nii.gz")[0].astype(np.uint8)
        result = result_from_truth(case, study, labels)
        pdf = pdf_bytes()
        out: dict[str, Any] = {"machine": machine(), "case": {"preset": "clinical", "seed": seed, "ct_shape": list(study.ct.grid.shape),
                                                              "ct_files": len(study.ct.files), "pet_files": len(study.pet.files),
                                                              "stations": len(result["stations"])}}
        for seg_type in ("BINARY", "LABELMAP"):
            times, cpu, sizes = [], [], {}
            for i in range(repeats):
                target = work / f"out_{seg_type}_{i}"
                t0, c0 = time.perf_counter(), time.process_time()
                paths = write_dicom_outputs(study.ct.files, study.pet.files, labels, result, target, pdf_bytes=pdf, seg_type=seg_type,
                                            ct_grid=study.ct.grid)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                sizes = {p.name: p.stat().st_size for p in paths}
            out[f"write_dicom_outputs_{seg_type.lower()}"] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                                                               "cpu_s": [round(t, 3) for t in cpu],
                                                               "file_bytes": sizes, "target_s": TARGET_S}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=606060)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "outputs" / "dicom_outputs.json")
    args = ap.parse_args()
    res = run(args.seed, args.repeats)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    for k in ("write_dicom_outputs_binary", "write_dicom_outputs_labelmap"):
        print(f"{k}: median {res[k]['median_s']} s (runs {res[k]['runs_s']}, cpu {res[k]['cpu_s']}), target < {TARGET_S} s")
    print(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; CT {res['case']['ct_shape']}")
    return 0 if res["write_dicom_outputs_binary"]["median_s"] < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
