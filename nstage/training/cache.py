"""On-disk cache of station patches: registration runs once per study, re-runs reuse it.

Layout under the cache folder (default COHORT/.nstage_cache):
  stations-<source>/<case>.npz      label map on the CT grid + station SUV figures + blood pool
  patches-<source>-<key>/<case>.npz patches (float16) for one patch setting (<key> hashes it)
`source` is "registration" (the pipeline's own atlas registration, as at inference) or "truth"
(the generator's station map, synthetic cohorts only: no registration, for quick training runs).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nstage.analysis.classifier.patches import extract_station_patches
from nstage.analysis.classifier.settings import PatchSettings
from nstage.analysis.measure import StationUptake
from nstage.errors import InputError
from nstage.stations import load_stations
from nstage.training.cohort import CohortCase

log = logging.getLogger("nstage.training")
SOURCES = ("registration", "truth")


@dataclass(frozen=True)
class CachedCase:
    """One study's station patches and figures, with its cohort row."""

    case: CohortCase
    labels: np.ndarray  # (S,) station labels
    patches: np.ndarray  # (S, 3, D, D, D) float16
    suv_max: np.ndarray  # (S,) SUVmax per station (pipeline measurement)
    blood_pool_suv: float | None  # blood-pool SUVmean (None: not measured)
    uptake: dict[str, StationUptake] = field(default_factory=dict)  # station -> pipeline measurements (for the baselines)

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


def _patch_file(cache: Path, case: CohortCase, source: str, settings: PatchSettings) -> Path:
    return cache / f"patches-{source}-{settings.key()}" / f"{case.case}.npz"


def _uptake_json(by_label: dict[int, StationUptake]) -> dict[str, dict]:
    return {str(k): {f: getattr(u, f) for f in ("label", "volume_ml", "suv_max", "suv_mean", "suv_peak", "hottest_point_lps")}
            for k, u in by_label.items()}


def _stations(case: CohortCase, study, source: str, cache: Path) -> tuple[np.ndarray, dict, float | None]:
    """Label map, uptake figures (label -> StationUptake fields) and blood pool of a study (cached once)."""
    from nstage.analysis.measure import station_uptake

    path = _station_file(cache, case, source)
    if path.is_file():
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        if "uptake" not in meta:  # caches written before the full figures were kept: measure again (no registration)
            meta["uptake"] = _uptake_json(station_uptake(study.pet.array, study.pet.grid, z["labels"], study.ct.grid))
        return z["labels"], meta["uptake"], meta["blood_pool_suv"]
    if source == "registration":
        from nstage.pipeline import RunOptions, find_stations, load_default_atlases

        f = find_stations(study, load_default_atlases(RunOptions()))
        labels, pool = f.labels.astype(np.uint8), f.blood_pool.suv_mean
        uptake = _uptake_json({u.label: u for u in f.uptake.values()})
        status = f.registration.status
    else:
        from nstage.geometry import load_nifti

        truth_map = case.study_dir.parent / "truth_stations.nii.gz"
        if not truth_map.is_file():
            raise InputError(f"station source 'truth' needs {truth_map} (synthetic cohorts only); use --stations registration")
        labels = load_nifti(truth_map)[0].astype(np.uint8)
        uptake = _uptake_json(station_uptake(study.pet.array, study.pet.grid, labels, study.ct.grid))
        pool, status = None, "truth"
    meta = {"uptake": uptake, "blood_pool_suv": pool, "status": status}
    _tmp_save(path, labels=labels, meta=np.array(json.dumps(meta)))
    return labels, uptake, pool


def build_case(case: CohortCase, source: str, settings: PatchSettings, cache: Path) -> Path:
    """Cache one study's patches (registering it first unless its station map is cached)."""
    out = _patch_file(cache, case, source, settings)
    if out.is_file() and "uptake" in np.load(out).files:
        return out
    from nstage.ingest.study import load_study

    study = load_study(case.study_dir)
    labels, uptake, pool = _stations(case, study, source, cache)
    p = extract_station_patches(study.ct.array, study.ct.grid, study.pet.array, study.pet.grid, labels, settings)
    smax = np.array([uptake[str(int(lab))]["suv_max"] for lab in p.labels], np.float32)
    _tmp_save(out, labels=p.labels, patches=p.patches.astype(np.float16), suv_max=smax,
              blood_pool_suv=np.array(np.nan if pool is None else pool, np.float64), uptake=np.array(json.dumps(uptake)))
    return out


def _build_one(args: tuple[CohortCase, str, PatchSettings, Path]) -> tuple[str, str | None]:
    case, source, settings, cache = args
    try:
        build_case(case, source, settings, cache)
        return case.key, None
    except Exception as exc:  # one bad study must not stop a cohort; it is reported and left out
        return case.key, f"{type(exc).__name__}: {exc}"


def build_cache(cases: list[CohortCase], source: str, settings: PatchSettings, cache: Path | None = None,
                jobs: int = 1) -> dict[str, str]:
    """Cache every case; returns {case key: error} for the cases that failed."""
    if source not in SOURCES:
        raise InputError(f"unknown station source {source!r}; choose one of {', '.join(SOURCES)}")
    work = [(c, source, settings, Path(cache) if cache else default_cache_dir(c)) for c in cases]
    errors: dict[str, str] = {}
    t0 = time.time()
    results = ProcessPoolExecutor(jobs).map(_build_one, work) if jobs > 1 else map(_build_one, work)
    for n, (key, err) in enumerate(results, start=1):
        if err:
            errors[key] = err
            log.warning("case %d of %d left out: %s", n, len(work), err)
        if n % 10 == 0 or n == len(work):
            log.info("cache: %d of %d studies (%.0f s)", n, len(work), time.time() - t0)
    return errors


def load_cached(cases: list[CohortCase], source: str, settings: PatchSettings, cache: Path | None = None) -> list[CachedCase]:
    """The cached cases (those with a cache file; build_cache first)."""
    out = []
    names = {s.label: s.station for s in load_stations()}
    for c in cases:
        path = _patch_file(Path(cache) if cache else default_cache_dir(c), c, source, settings)
        if not path.is_file():
            continue
        z = np.load(path)
        if "uptake" not in z.files:  # written by an older version: build_cache rewrites it, until then it is not cached
            log.warning("cache file %s predates the station uptake figures; run without --cached-only to rebuild it", path)
            continue
        pool = float(z["blood_pool_suv"])
        raw = json.loads(str(z["uptake"]))
        uptake = {names[int(k)]: StationUptake(**{**v, "hottest_point_lps": tuple(v["hottest_point_lps"])})
                  for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}
        out.append(CachedCase(c, z["labels"], z["patches"], z["suv_max"], None if np.isnan(pool) else pool, uptake))
    return out
