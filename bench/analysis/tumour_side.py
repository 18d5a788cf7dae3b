"""The tumour side found on the images against the truth, and what its organ-wall and CT rules weigh (issue 42).

  python -m bench.analysis.tumour_side [--cohort NAME=COHORT_DIR ...] [--batch NAME=COHORT_DIR:BATCH_OUT ...] [--test-cohort]
                                       [--jobs 2] [--out bench/analysis/tumour_side]

A cohort's studies are read from DICOM with the station maps the training cache keeps
(`stations-registration/<case>.npz`, written by `nstage evaluate --stations registration`) and the blood pool
measured then; `--batch` reads a cohort that `nstage batch` ran (its stations.nii.gz and result.json's blood
pool); `--test-cohort` adds the 50 in-memory studies of the tests (tests/cohort_eval.py, generator maps,
no blood pool). Per study: the side found (right, wrong, not found) and, for every hot piece inside the lung
envelope that is a sliver (under organ_wall_max_ml) of a hot region lying mostly outside the envelope, the
region's outside volume and whether the piece lies on the true primary: the organ-size rule (organ_min_ml)
must separate the two. For every candidate lesion its lung contact and station share, on the primary or not: the
ranges the CT rules (organ_max_lung_contact, node_edge_min_station_share) separate; and which studies took their
side from the reading at the blood pool.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from bench.machine import machine

ROOT = Path(__file__).resolve().parents[2]


def slivers(hu: np.ndarray, ct_grid: Any, suv: np.ndarray, pet_grid: Any, labels: np.ndarray, pool: float | None,
            truth: dict[str, Any]) -> list[dict[str, Any]]:
    """In-envelope slivers of hot regions lying mostly outside the envelope: outside volume, on the primary or not."""
    from nstage.analysis.config import analysis_config
    from nstage.analysis.tumour_side import _ball, lung_envelope, lungs_on
    from nstage.geometry import resample
    from nstage.stationmap.registration import find_lungs

    cfg = analysis_config()["tumour_side"]
    lungs = lungs_on(pet_grid, find_lungs(hu, ct_grid))
    env = lung_envelope(lungs, pet_grid, float(cfg["lung_closing_mm"]))
    near = ndimage.binary_dilation(resample(labels, ct_grid, pet_grid, order=0) > 0, structure=_ball(float(cfg["station_margin_mm"]), pet_grid.spacing))
    thr = float(cfg["lesion_min_suv"]) if pool is None else max(float(cfg["lesion_min_suv"]), float(cfg["lesion_min_blood_pool_ratio"]) * pool)
    anywhere = ~near & (suv >= thr)
    regions, _ = ndimage.label(anywhere)
    pieces, _ = ndimage.label(env & anywhere)
    voxel = pet_grid.voxel_volume_ml
    centre, reach = np.array(truth["centre_lps"]), truth["diameter_mm"] / 2 + 8.0
    out = []
    for idx, box in enumerate(ndimage.find_objects(pieces), 1):
        m = pieces[box] == idx
        vol = float(m.sum()) * voxel
        region = regions == regions[box][m][0]
        inside, total = int((region & env).sum()), int(region.sum())
        if vol < float(cfg["lesion_min_volume_ml"]) or vol >= float(cfg["organ_wall_max_ml"]) or inside * 2 >= total:
            continue
        at = pet_grid.index_to_lps((np.argwhere(m).mean(axis=0) + np.array([b.start for b in box]))[::-1])
        out.append({"sliver_ml": round(vol, 2), "outside_ml": round((total - inside) * voxel, 1),
                    "on_primary": bool(np.linalg.norm(at - centre) <= reach)})
    return out


def candidates(found: Any, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Each candidate lesion's CT lung contact and station-margin share, and whether it lies on the true primary."""
    centre, reach = np.array(truth["centre_lps"]), truth["diameter_mm"] / 2 + 8.0
    return [{"suv_max": round(l.suv_max, 2), "lung_contact": l.lung_contact, "station_share": l.station_share,
             "on_primary": bool(np.linalg.norm(np.array(l.centre_lps) - centre) <= reach)} for l in found.candidates]


def _row(case: str, hu: np.ndarray, ct_grid: Any, suv: np.ndarray, pet_grid: Any, labels: np.ndarray, pool: float | None,
         truth: dict[str, Any]) -> dict[str, Any]:
    """The side found on one study against its truth, with its candidates and slivers."""
    from nstage.analysis.tumour_side import find_tumour_side

    found = find_tumour_side(hu, ct_grid, suv, pet_grid, labels, pool)
    return {"case": case, "truth": truth["side"], "found": found.side, "reason": found.reasons[0],
            "candidates": candidates(found, truth), "slivers": slivers(hu, ct_grid, suv, pet_grid, labels, pool, truth)}


def _study(spec: tuple[str, str]) -> dict[str, Any]:
    """One study of a cohort: side found and slivers."""
    from nstage.ingest.study import load_study

    root, case = Path(spec[0]), spec[1]
    cached = np.load(root / ".nstage_cache" / "stations-registration" / f"{case}.npz", allow_pickle=True)
    pool = json.loads(str(cached["meta"])).get("blood_pool_suv")
    study = load_study(root / case / "dicom")
    truth = json.loads((root / case / "truth.json").read_text())["tumour"]
    return _row(case, study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, cached["labels"], pool, truth)


def _batch_study(spec: tuple[str, str, str]) -> dict[str, Any]:
    """One study of a cohort run by `nstage batch`: its station map and blood pool from the batch's outputs."""
    from nstage.geometry import load_nifti, resample
    from nstage.ingest.study import load_study

    root, out, case = Path(spec[0]), Path(spec[1]), spec[2]
    result = json.loads((out / case / "result.json").read_text())
    labels, grid = load_nifti(out / case / "stations.nii.gz")
    study = load_study(root / case / "dicom")
    ct, pet = study.ct, study.pet
    pool = result["blood_pool"]["suv_mean"] if result["blood_pool"].get("available") else None
    truth = json.loads((root / case / "truth.json").read_text())["tumour"]
    return _row(case, ct.array, ct.grid, pet.array, pet.grid, resample(labels, grid, ct.grid, order=0), pool, truth)


def _test_study(index: int) -> dict[str, Any]:
    from nstage.progress import StageTimer
    from nstage.synth.case import render_case
    from tests.cohort_eval import COHORT_SEED

    rc = render_case(f"case_{index:04d}", COHORT_SEED, index, "small", "default", None, StageTimer())
    return _row(f"case_{index:04d}", rc.hu, rc.ct_grid, rc.suv, rc.pet_grid, rc.stations, None, rc.truth["tumour"])


def _span(values: list[float]) -> list[float] | None:
    return [round(min(values), 3), round(max(values), 3)] if values else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from nstage.analysis.config import analysis_config

    edge = float(analysis_config()["tumour_side"]["node_edge_min_station_share"])
    on = [c for r in rows for c in r["candidates"] if c["on_primary"]]
    off = [c for r in rows for c in r["candidates"] if not c["on_primary"]]
    organ = [s["outside_ml"] for r in rows for s in r["slivers"] if not s["on_primary"]]
    tumour = [s["outside_ml"] for r in rows for s in r["slivers"] if s["on_primary"]]
    return {"studies": len(rows), "right": sum(r["found"] == r["truth"] for r in rows),
            "wrong": sum(r["found"] not in (None, r["truth"]) for r in rows), "not_found": sum(r["found"] is None for r in rows),
            "faint_pass": [r["case"] for r in rows if "above the blood pool" in r["reason"]],
            "candidates": {"on_primary": len(on), "others": len(off),
                           "lung_contact": {"on_primary": _span([c["lung_contact"] for c in on]), "others": _span([c["lung_contact"] for c in off])},
                           "station_share": {"on_primary": _span([c["station_share"] for c in on]), "others": _span([c["station_share"] for c in off]),
                                             "others_at_or_above_rule": sum(c["station_share"] >= edge for c in off)}},
            "missed": [{"case": r["case"], "truth": r["truth"], "found": r["found"], "reason": r["reason"]} for r in rows if r["found"] != r["truth"]],
            "sliver_outside_ml": {"organ": [min(organ), max(organ)] if organ else None, "primary": [min(tumour), max(tumour)] if tumour else None,
                                  "organ_slivers": len(organ), "primary_slivers": len(tumour)}}


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table's lines."""
    return [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}", *(f"| {' | '.join(str(v) for v in row)} |" for row in rows)]


def render(doc: dict[str, Any]) -> str:
    """The bench page: per cohort the sides found and the outside volumes the organ-size rule separates."""
    m, rules = doc["machine"], doc["rules"]
    lines = ["# Tumour side found on the images (issue 42)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; {doc['measured_at']}. `python -m bench.analysis.tumour_side` (method in its docstring). "
             f"Rules: lesion SUV >= {rules['lesion_min_suv']} (or {rules['lesion_min_blood_pool_ratio']} x blood pool), volume at "
             f"{rules['lesion_edge_fraction']} of its SUVmax >= {rules['lesion_min_volume_ml']} ml; a sliver under {rules['organ_wall_max_ml']} ml "
             f"is the heart wall when its hot region lies mostly outside the lung envelope with >= {rules['organ_min_ml']} ml there.", "",
             *_table(["cohort", "studies", "side right", "wrong", "not found", "slivers off the primary: outside ml (count)",
                      "slivers on the primary: outside ml (count)"],
                     [[name, r["studies"], r["right"], r["wrong"], r["not_found"], f"{s['organ']} ({s['organ_slivers']})",
                       f"{s['primary']} ({s['primary_slivers']})"] for name, r in doc["cohorts"].items() for s in [r["sliver_outside_ml"]]])]
    lines += ["", f"What the CT adds (every candidate lesion; on the primary: within its radius + 8 mm of the true centre). A candidate "
              f"whose shell of {rules['contact_shell_mm']} mm around its region at half its SUVmax holds less than "
              f"{rules['organ_max_lung_contact']} lung is an organ's surface and comes last; one whose region lies "
              f">= {rules['node_edge_min_station_share']} in the stations' margin is a node's edge and comes after the lung's own lesions. "
              f"Studies where no lesion with lung around it reaches the avidity threshold are read again at {rules['faint_blood_pool_ratio']} x "
              f"the blood pool (at least SUV {rules['faint_min_suv']}), keeping lesions with lung contact >= {rules['faint_min_lung_contact']}.", "",
              *_table(["cohort", "candidates on the primary / others", "lung contact: primary / others", "station share: primary / others",
                       "others at the node-edge share", "read at the blood pool"],
                      [[name, f"{c['on_primary']} / {c['others']}", f"{c['lung_contact']['on_primary']} / {c['lung_contact']['others']}",
                        f"{c['station_share']['on_primary']} / {c['station_share']['others']}", c["station_share"]["others_at_or_above_rule"],
                        ", ".join(r["faint_pass"]) or "none"] for name, r in doc["cohorts"].items() for c in [r["candidates"]]])]
    missed = [f"- {name} {x['case']}: truth {x['truth']}, found {x['found']} ({x['reason']})" for name, r in doc["cohorts"].items() for x in r["missed"]]
    lines += ["", "Studies where the side was not found right:" if missed else "Every side was found right.", *missed]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from nstage.analysis.config import analysis_config
    from nstage.cohort_executor import map_all

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--batch", action="append", default=[], metavar="NAME=COHORT_DIR:BATCH_OUT",
                    help="a cohort run by nstage batch: station maps and blood pool from its outputs")
    ap.add_argument("--test-cohort", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "analysis" / "tumour_side")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    for spec in args.cohort:
        name, folder = spec.split("=", 1)
        root = Path(folder).resolve()
        cases = sorted(p.stem for p in (root / ".nstage_cache" / "stations-registration").glob("case_*.npz"))
        results[name] = summary(map_all(_study, [(str(root), c) for c in cases], args.jobs, label=f"tumour side {name}"))
    for spec in args.batch:
        name, folders = spec.split("=", 1)
        root, out = (Path(f).resolve() for f in folders.split(":", 1))
        cases = sorted(p.name for p in out.iterdir() if (p / "result.json").is_file())
        results[name] = summary(map_all(_batch_study, [(str(root), str(out), c) for c in cases], args.jobs, label=f"tumour side {name}"))
    if args.test_cohort:
        results["test cohort (generator maps)"] = summary(map_all(_test_study, range(50), args.jobs, label="tumour side tests"))
    doc = {"machine": machine(), "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rules": analysis_config()["tumour_side"], "cohorts": results}
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
