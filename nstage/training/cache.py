"""On-disk cache of what the station network reads: registration runs once per study, re-runs reuse it.

Layout under the cache folder (default COHORT/.nstage_cache):
  stations-<source>/<case>.npz      label map on the CT grid + station SUV figures + blood pool
  stations-registration/<case>.registration.json   the registration's report (registration.json), kept
                                    also when it failed (the study is then left out of the cohort)
  inputs-<source>-<key>/<case>.npz  network inputs (patches float16, features) and the measurements the
                                    baselines read (nodes, tumour), for one patch setting (<key> hashes it)
`source` is "registration" (the pipeline's own atlas registration, as at inference) or "truth"
(a given station map, `truth_stations.nii.gz` beside the study: the generator's, or one reviewed
in the MONAI Label app; no registration). With a given map the blood pool is the generator's
arterial blood SUV (the value the registered aorta region measures) when the case has the
generator's truth.json, else unknown.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nstage.analysis.classifier.features import PATIENT_FEATURES, STATION_FEATURES
from nstage.analysis.classifier.inputs import StationInputs, station_inputs
from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.classifier.station_case import StationCase
from nstage.analysis.measure import StationUptake
from nstage.analysis.nodes import Node, StationNodes, node_settings
from nstage.cohort_executor import CohortExecutor, ExecutorOptions, WarmUp, as_options
from nstage.errors import InputError
from nstage.progress import ProgressBar
from nstage.stations import load_stations
from nstage.training.cohort import CohortCase

log = logging.getLogger("nstage.training")
SOURCES = ("registration", "truth")
CACHE_VERSION = 7  # 3: calcium foci and fatty-hilum notches; 4: fat-level density inside the node (2026-12-05); 5: the tumour found in the registration's lung mask (2026-12-07); 6: faint primaries measured at half their SUVmax, tumours bulging out of the lung envelope kept (2026-12-07); 7: lesions of the lung before the lung-side edges of hot regions outside it (2026-12-07)


@dataclass(frozen=True)
class CachedCase:
    """One study's network inputs and measurements, with its cohort row."""

    case: CohortCase
    inputs: StationInputs  # patches float16
    uptake: dict[str, StationUptake]  # station -> pipeline measurements (for the baselines)
    nodes: dict[str, StationNodes] = field(default_factory=dict)  # station -> nodes read (for the baselines)
    blood_pool_suv: float | None = None  # blood-pool SUVmean (None: not measured)
    tumour_suv: float | None = None  # the primary tumour's SUVmax (None: not found)
    tumour_side_found: str | None = None  # the side found on the images ("R" / "L"; None: not found); the inputs read the cohort's side

    @property
    def labels(self) -> np.ndarray:
        return self.inputs.labels

    @property
    def stations(self) -> list[str]:
        names = {s.label: s.station for s in load_stations()}
        return [names[int(lab)] for lab in self.labels]

    def truth(self) -> np.ndarray | None:
        """(S,) 1/0 station truth, or None without station labels."""
        t = self.case.station_truth
        return None if t is None else np.array([int(t.get(s, False)) for s in self.stations], np.int64)


def default_cache_dir(case: CohortCase) -> Path:
    return case.study_dir.parent.parent / ".nstage_cache" if case.study_dir.name == "dicom" else case.study_dir.parent / ".nstage_cache"


def _tmp_save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _station_file(cache: Path, case: CohortCase, source: str) -> Path:
    return cache / f"stations-{source}" / f"{case.case}.npz"


def _input_file(cache: Path, case: CohortCase, source: str, settings: PatchSettings) -> Path:
    """Named by the patch settings, the feature lists and the node reader's settings, so a change of any of
    them builds a new cache (CACHE_VERSION changes with the node reader's code)."""
    names = hashlib.sha1(json.dumps([CACHE_VERSION, STATION_FEATURES, PATIENT_FEATURES, asdict(node_settings())]).encode()).hexdigest()[:6]
    return cache / f"inputs-{source}-{settings.key()}-{names}" / f"{case.case}.npz"


def registration_file(cache: Path, case: CohortCase) -> Path:
    """registration.json of a study registered for the cache (also for a registration that failed)."""
    return cache / "stations-registration" / f"{case.case}.registration.json"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


def _uptake_json(by_label: dict[int, StationUptake]) -> dict[str, dict]:
    return {str(k): asdict(u) for k, u in by_label.items()}


def _truth_blood_pool(case: CohortCase) -> float | None:
    """The generator's arterial blood SUV (what the registered aorta region measures); None for a cohort
    whose station maps come from elsewhere (e.g. maps reviewed in the MONAI Label app): no blood pool then."""
    truth = case.study_dir.parent / "truth.json"
    try:
        return float(json.loads(truth.read_text())["pet"]["tissue_suv"]["arterial_blood"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _stations(case: CohortCase, study, source: str, cache: Path, peak: np.ndarray) -> tuple[np.ndarray, dict, float | None]:
    """Label map, uptake figures (label -> StationUptake fields) and blood pool of a study (cached once)."""
    from nstage.analysis.measure import station_uptake

    path = _station_file(cache, case, source)
    if path.is_file():
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        pool = meta["blood_pool_suv"] if source == "registration" else _truth_blood_pool(case)
        return z["labels"], meta["uptake"], pool
    if source == "registration":
        from nstage.pipeline import RunOptions, accepted, load_default_atlases, measure_stations
        from nstage.stationmap.registration import map_stations

        reg = map_stations(study.ct.array, study.ct.grid, load_default_atlases(RunOptions()))
        _write_json(registration_file(cache, case), reg.report())  # kept whatever the outcome: the registration's QA reads it
        f = measure_stations(study, accepted(study, reg))
        labels, pool = f.labels.astype(np.uint8), f.blood_pool.suv_mean
        uptake = _uptake_json({u.label: u for u in f.uptake.values()})
        status = f.registration.status
    else:
        from nstage.geometry import load_nifti

        truth_map = case.study_dir.parent / "truth_stations.nii.gz"
        if not truth_map.is_file():
            raise InputError(f"station source 'truth' needs {truth_map} (synthetic cohorts only); use --stations registration")
        labels = load_nifti(truth_map)[0].astype(np.uint8)
        uptake = _uptake_json(station_uptake(study.pet.array, study.pet.grid, labels, study.ct.grid, peak))
        pool, status = _truth_blood_pool(case), "truth"
    meta = {"uptake": uptake, "blood_pool_suv": pool, "status": status}
    _tmp_save(path, labels=labels, meta=np.array(json.dumps(meta)))
    return labels, uptake, pool


def _uptake_by_name(raw: dict[str, dict]) -> dict[str, StationUptake]:
    names = {s.label: s.station for s in load_stations()}
    return {names[int(k)]: StationUptake(**{**v, "hottest_point_lps": tuple(v["hottest_point_lps"])})
            for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def _node(d: dict) -> Node:
    return Node(**{**d, "centre_lps": tuple(d["centre_lps"])})


def _nodes_json(nodes: dict[str, StationNodes]) -> dict[str, dict]:
    return {s: {"index": None if n.index_node is None else asdict(n.index_node), "nodes": [asdict(x) for x in n.nodes],
                "candidates": n.candidates} for s, n in nodes.items()}


def _nodes_from_json(raw: dict[str, dict]) -> dict[str, StationNodes]:
    return {s: StationNodes(None if v["index"] is None else _node(v["index"]), tuple(_node(x) for x in v["nodes"]), int(v["candidates"]))
            for s, v in raw.items()}


def build_case(case: CohortCase, source: str, settings: PatchSettings, cache: Path, rules: str = "tnm") -> Path:
    """Cache one study's network inputs (registering it first unless its station map is cached)."""
    out = _input_file(cache, case, source, settings)
    if out.is_file():
        return out
    from nstage.analysis.measure import suv_peak_map
    from nstage.analysis.nodes import read_nodes
    from nstage.analysis.tumour_side import find_tumour_side
    from nstage.ingest.study import load_study

    study = load_study(case.study_dir)
    ct, pet = study.ct, study.pet
    peak = suv_peak_map(pet.array, pet.grid)  # once, for the station figures and the nodes
    labels, uptake_raw, pool = _stations(case, study, source, cache, peak)
    names = {s.label: s.station for s in load_stations()}
    found = find_tumour_side(ct.array, ct.grid, pet.array, pet.grid, labels, pool)
    primary = found.primary
    tumour_suv = primary.suv_max if primary is not None else None
    nodes = read_nodes(ct.array, ct.grid, pet.array, pet.grid, labels, names, pool, tumour_suv, peak=peak)
    uptake = _uptake_by_name(uptake_raw)
    sc = StationCase(ct.array, ct.grid, pet.array, pet.grid, labels, uptake, nodes, pool, tumour_suv, case.tumour_side)
    x = station_inputs(sc, settings, rules)
    meta = {"version": CACHE_VERSION, "uptake": uptake_raw, "nodes": _nodes_json(nodes), "blood_pool_suv": pool,
            "tumour_suv": tumour_suv, "tumour_side_found": found.side, "rules": rules}
    _tmp_save(out, labels=x.labels, node=x.node.astype(np.float16), context=x.context.astype(np.float16), features=x.features,
              patient=x.patient, meta=np.array(json.dumps(meta)))
    return out


def _build_one(args: tuple[CohortCase, str, PatchSettings, Path, str]) -> tuple[str, str | None]:
    case, source, settings, cache, rules = args
    try:
        build_case(case, source, settings, cache, rules)
        return case.key, None
    except Exception as exc:  # one bad study must not stop a cohort; it is reported and left out
        return case.key, f"{type(exc).__name__}: {exc}"


def _warm_atlas() -> None:
    """Load the shipped atlas once in a worker process (the registration source reads it for every study)."""
    from nstage.pipeline import RunOptions, load_default_atlases

    load_default_atlases(RunOptions())


def build_cache(cases: list[CohortCase], source: str, settings: PatchSettings, cache: Path | None = None,
                jobs: int | ExecutorOptions = 1, rules: str = "tnm") -> dict[str, str]:
    """Cache every case on the cohort executor (`jobs` workers, or a cluster); returns {case key: error} for the cases that failed."""
    if source not in SOURCES:
        raise InputError(f"unknown station source {source!r}; choose one of {', '.join(SOURCES)}")
    todo = [(c, source, settings, Path(cache) if cache else default_cache_dir(c), rules) for c in cases]
    work = [w for w in todo if not _input_file(w[3], w[0], source, settings).is_file()]
    errors: dict[str, str] = {}
    bar = ProgressBar(len(todo), "cache")
    bar.counts["skipped"] = len(todo) - len(work)
    if not work:
        return errors
    with CohortExecutor(as_options(jobs), WarmUp(_warm_atlas) if source == "registration" else None) as ex:
        for outcome in ex.map(_build_one, work):
            key, err = outcome.value if outcome.ok else (work[outcome.index][0].key, outcome.error)
            if err:
                errors[key] = err
                log.warning("case %d of %d left out: %s", outcome.index + 1, len(work), err)  # no name: case folders may be patient IDs
            bar.advance("failed" if err else "done")
    return errors


def load_cached(cases: list[CohortCase], source: str, settings: PatchSettings, cache: Path | None = None) -> list[CachedCase]:
    """The cached cases (those with a cache file; build_cache first)."""
    out = []
    for c in cases:
        path = _input_file(Path(cache) if cache else default_cache_dir(c), c, source, settings)
        if not path.is_file():
            continue
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        inputs = StationInputs(z["labels"].astype(np.int64), z["node"], z["context"], z["features"], z["patient"])
        out.append(CachedCase(c, inputs, _uptake_by_name(meta["uptake"]), _nodes_from_json(meta["nodes"]),
                              meta["blood_pool_suv"], meta["tumour_suv"], meta.get("tumour_side_found")))
    return out
