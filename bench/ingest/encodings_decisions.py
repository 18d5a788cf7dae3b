"""`nstage run` on one synthetic study in every transfer syntax and as Legacy Converted Enhanced CT / PET,
against the uncompressed study: same decisions? how far do probabilities and station SUVmax move?

`python -m bench.ingest.encodings_decisions [--seed 424242] [--preset small]` -> bench/ingest/encodings_decisions.json

The tests show identical volumes for every lossless syntax and run the whole pipeline on two of them
(tests/ingest/test_encodings.py, tests/test_run_encodings.py); this runs it on all of them once
(about 1 min a run on 2 cores), the lossy ones included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import machine
from tests.encodings import ENCODINGS, legacy_enhanced_study, reencode_study

REPO = Path(__file__).resolve().parents[2]


def _run(study: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "nstage.cli", "run", "-i", str(study), "-o", str(out), "-m", str(REPO / "models")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return json.loads((out / "result.json").read_text())


def _decisions(r: dict) -> tuple:
    return (r["n_stage"], r["tumour_side"], {s: v["malignant"] for s, v in r["stations"].items()},
            {k: v.get("n_stage") for k, v in r["baseline"].items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--preset", default="small")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nstage-encodings-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "nstage.cli", "synth", str(work / "cohort"), "--cases", "1", "--seed", str(a.seed),
                        "--preset", a.preset], check=True, capture_output=True, cwd=REPO)
        source = work / "cohort" / "case_0000" / "dicom"
        ref = _run(source, work / "out" / "uncompressed")
        studies = {name: reencode_study(source, work / name, name) for name in ENCODINGS}
        studies["legacy-enhanced"] = legacy_enhanced_study(source, work / "legacy-enhanced")
        rows = {}
        for name, study in studies.items():
            r = _run(study, work / "out" / name)
            rows[name] = {
                "lossless": name == "legacy-enhanced" or ENCODINGS[name].max_stored_error == 0.0,
                "same_decisions": _decisions(r) == _decisions(ref),
                "max_abs_probability_change": round(max(abs(r["stations"][s]["probability"] - v["probability"]) for s, v in ref["stations"].items()), 4),
                "max_abs_station_suvmax_change": round(max(abs(r["stations"][s]["suv_max"] - v["suv_max"]) for s, v in ref["stations"].items()), 4),
            }
            print(name, rows[name], flush=True)
    out = {"what": "nstage run (shipped model) on one study re-encoded, against the uncompressed study", "machine": machine(),
           "preset": a.preset, "seed": a.seed, "n_stage_uncompressed": ref["n_stage"], "encodings": rows}
    (REPO / "bench" / "ingest" / "encodings_decisions.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
