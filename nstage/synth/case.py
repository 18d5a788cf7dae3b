"""Generate one synthetic PET/CT study with its ground truth, and cohorts of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nstage import __version__
from nstage.analysis.nrules import stage
from nstage.geometry import Grid
from nstage.paths import config_dir
from nstage.progress import StageTimer
from nstage.stations import load_stations
from nstage.synth.acquisition import PatientStudy, PetAcquisition, suv_bw_factor
from nstage.synth.anatomy import (
    Anatomy,
    AnatomyParams,
    Structure,
    build_anatomy,
    lung_vessel_tree,
    sample_params,
)
from nstage.synth.dicom_writer import write_ct_series, write_pet_series
from nstage.synth.disease import DiseaseSpec, sample_disease
from nstage.synth.frame import CanonicalFrame, sample_frame
from nstage.synth.lesions import PlacedNode, PlacedTumour, place_lesions
from nstage.synth.rasterize import Canvas, paint_anatomy
from nstage.synth.render import (
    CtSettings,
    node_hu_means,
    node_tissue_hu,
    paint_lesions,
    render_ct,
    render_pet,
    sample_pet_settings,
    uptake_map,
)
from nstage.synth.station_builder import build_stations

GENERATOR = "nstage-synth"
GENERATOR_MODEL = 3  # 1: uptake and size only; 2: node CT signs, size-coupled uptake, EARL1 PET resolution (issue 16); 3: nodes drawn whole and at their truth size (placed clear of vessels and airways, the frame's scale undone)


@lru_cache(maxsize=1)
def presets_config() -> dict[str, Any]:
    return json.loads((config_dir() / "synth" / "presets.json").read_text())


def preset_names() -> list[str]:
    return list(presets_config()["presets"])


@dataclass
class RenderedCase:
    """Everything one case produced in memory (for previews and tests)."""

    case_id: str
    ct_grid: Grid
    hu: np.ndarray
    stations: np.ndarray  # on the CT grid
    instance: np.ndarray  # lesion instances on the CT grid: 1 tumour, 2 its necrosis, truth node "instance" for each node
    pet_grid: Grid
    suv: np.ndarray  # on the PET grid
    truth: dict[str, Any]


def _patient(rng: np.random.Generator, case_id: str, seed: int, index: int) -> tuple[PatientStudy, float]:
    sex = "M" if rng.random() < 0.6 else "F"
    height = float(np.clip(rng.normal(1.76 if sex == "M" else 1.63, 0.07), 1.45, 2.0))
    bmi = float(np.clip(rng.normal(26.0, 4.0), 17.0, 40.0))
    age = int(rng.integers(45, 86))
    when = datetime(2026, 1, 5, 8, 0) + timedelta(days=int(rng.integers(0, 300)), minutes=int(rng.integers(0, 8 * 60)))
    entropy = f"{GENERATOR}:{seed}:{index}"
    study = PatientStudy(
        patient_name=f"SYNTHETIC^{case_id.upper()}",
        patient_id=f"SYN{seed:06d}{index:05d}",
        birth_date=f"{when.year - age:04d}0101",
        sex=sex,
        age_years=age,
        weight_kg=round(bmi * height**2, 1),
        height_m=round(height, 2),
        study_uid=make_uid_root(entropy, "study"),
        frame_of_reference_uid=make_uid_root(entropy, "for"),
        study_datetime=when,
        accession_number=f"A{seed % 10000:04d}{index:05d}",
        study_id=str(index + 1),
        uid_seed=entropy,
    )
    return study, bmi


def make_uid_root(entropy: str, what: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[entropy, what])


def with_lung_vessels(anatomy: Anatomy, rng: np.random.Generator) -> Anatomy:
    from nstage.synth.shapes import Union

    tubes = lung_vessel_tree(anatomy, rng)
    if tubes:
        anatomy.structures.insert(
            next(i for i, s in enumerate(anatomy.structures) if s.name == "liver"),
            Structure("lung_vessels", "venous_blood", Union(tuple(tubes)), over=("lung",)),
        )
    return anatomy


def _ct_grid(rng: np.random.Generator, preset: dict[str, Any], frame: CanonicalFrame, params: AnatomyParams) -> Grid:
    cfg = presets_config()
    n = int(preset["ct_matrix"])
    fov = float(rng.uniform(*preset["ct_fov_mm"]))
    px = round(fov / n, 4)
    dz = float(rng.choice(preset["ct_slice_mm"]))
    z_lo, z_hi = cfg["z_range_canonical_mm"]
    m_lo, m_hi = rng.uniform(*cfg["z_margin_mm"], 2)
    lo = frame.to_patient(np.array([0.0, 0.0, z_lo - m_lo]))[2]
    hi = frame.to_patient(np.array([0.0, 0.0, z_hi + m_hi]))[2]
    nz = int(np.floor((hi - lo) / dz)) + 1
    centre = frame.to_patient(np.array([0.0, 10.0 * params.depth, 0.0]))
    cx = centre[0] + rng.normal(0, 5)
    cy = centre[1] + rng.normal(0, 5)
    origin = (cx - (n - 1) / 2 * px, cy - (n - 1) / 2 * px, lo)
    return Grid(shape=(nz, n, n), spacing=(px, px, dz), origin=origin)


def _pet_grid(preset: dict[str, Any], ct: Grid) -> Grid:
    n = int(preset["pet_matrix"])
    px = float(preset["pet_pixel_mm"])
    dz = float(preset["pet_slice_mm"])
    ext = ct.extent_mm()
    centre = ct.index_to_lps((np.array(ct.shape[::-1]) - 1) / 2.0)
    nz = int(np.floor((ext[2] - ct.spacing[2]) / dz)) + 1
    z0 = centre[2] - (nz - 1) / 2 * dz
    return Grid(shape=(nz, n, n), spacing=(px, px, dz), origin=(centre[0] - (n - 1) / 2 * px, centre[1] - (n - 1) / 2 * px, z0))


def _render_grid(ct: Grid, tissue: np.ndarray, spacing: float) -> Grid:
    """A grid of `spacing` mm over the body (non-air voxels) of the CT."""
    body = np.nonzero(tissue.any(axis=0))
    j0, j1, i0, i1 = body[0].min(), body[0].max(), body[1].min(), body[1].max()
    lo = ct.index_to_lps(np.array([i0, j0, 0]))
    hi = ct.index_to_lps(np.array([i1, j1, ct.shape[0] - 1]))
    return Grid.covering(lo - 6, hi + 6, (spacing,) * 3)


def _acquisition(rng: np.random.Generator, study: PatientStudy) -> PetAcquisition:
    cfg = presets_config()
    dose = study.weight_kg * float(rng.uniform(*cfg["dose_mbq_per_kg"])) * 1e6
    uptake = timedelta(minutes=float(rng.uniform(*cfg["uptake_time_min"])))
    scan_start = study.study_datetime + timedelta(minutes=2)
    return PetAcquisition(
        injected_dose_bq=round(dose, -4),
        injection_datetime=scan_start - uptake,
        scan_start=scan_start,
        bed_duration_s=float(rng.choice(cfg["pet_bed_duration_s"])),
        bed_length_mm=float(cfg["pet_bed_length_mm"]),
    )


DISEASE_RNG = 2  # which of a case's random streams draws its disease


def case_rngs(seed: int, index: int) -> list[np.random.Generator]:
    """The independent random streams of one case (patient, anatomy, disease, frame, lesions, CT, PET, PET noise)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(8)]


def case_disease(seed: int, index: int) -> DiseaseSpec:
    """The disease render_case draws for a case, without rendering it."""
    return sample_disease(case_rngs(seed, index)[DISEASE_RNG])


def render_case(case_id: str, seed: int, index: int, preset_name: str, vendor: str, dicom_dir: Path | None, timer: StageTimer) -> RenderedCase:
    """Draw, paint and render one case; write its DICOM series into `dicom_dir` (if given)."""
    preset = presets_config()["presets"][preset_name]
    rngs = case_rngs(seed, index)
    with timer.stage("anatomy and disease"):
        study, bmi = _patient(rngs[0], case_id, seed, index)
        params = sample_params(rngs[1], study.sex, bmi, study.height_m)
        anatomy = with_lung_vessels(build_anatomy(params), rngs[1])
        disease = sample_disease(rngs[DISEASE_RNG])
        translation = np.array([rngs[3].normal(0, 4), rngs[3].normal(-20, 6), rngs[3].normal(-350, 30)])
        frame = sample_frame(rngs[3], params.size, params.width, params.depth, translation)
        tumour, nodes = place_lesions(rngs[4], anatomy, disease, frame)
    with timer.stage("CT"):
        ct_grid = _ct_grid(rngs[3], preset, frame, params)
        ct = Canvas.create(ct_grid, frame)
        paint_anatomy(ct, anatomy)
        stations = build_stations(ct, anatomy)
        lesions = paint_lesions(ct, tumour, nodes)
        stations = _stations_with_nodes(stations, lesions.instance, nodes)
        ct_settings = CtSettings(contrast=bool(rngs[5].random() < 0.3), noise_hu=float(rngs[5].uniform(*preset["ct_noise_hu"])))
        own_hu = node_tissue_hu(lesions, ct.tissue, nodes, ct_settings.contrast)
        hu = render_ct(ct, rngs[5], ct_settings, own_hu=own_hu)
        node_hu = node_hu_means(lesions, ct.tissue, nodes, ct_settings.contrast, own_hu)
        body_tissue = ct.tissue
    with timer.stage("PET"):
        render_grid = _render_grid(ct_grid, body_tissue, float(preset["pet_render_mm"]))
        del ct
        pet_canvas = Canvas.create(render_grid, frame)
        paint_anatomy(pet_canvas, anatomy)
        pet_lesions = paint_lesions(pet_canvas, tumour, nodes)
        pet_settings = sample_pet_settings(rngs[6], preset)
        uptake = uptake_map(pet_canvas, pet_lesions, tumour, nodes, pet_settings, rngs[6])
        del pet_canvas
        pet_grid = _pet_grid(preset, ct_grid)
        suv = render_pet(uptake, render_grid, pet_grid, pet_settings, rngs[7])
    acq = _acquisition(rngs[0], study)
    header = None
    if dicom_dir is not None:
        with timer.stage("DICOM"):
            write_ct_series(hu, ct_grid, study, dicom_dir / "ct", contrast=ct_settings.contrast)
            activity = suv / suv_bw_factor(study, acq)
            header = write_pet_series(activity, pet_grid, study, acq, dicom_dir / "pet", vendor=vendor)
    truth = _truth(case_id, seed, index, preset_name, study, params, disease, frame, tumour, nodes, node_hu, stations, ct_grid, ct_settings, pet_settings, header, vendor)
    return RenderedCase(case_id, ct_grid, hu, stations, lesions.instance, pet_grid, suv, truth)


def _stations_with_nodes(stations: np.ndarray, instance: np.ndarray, nodes: list[PlacedNode]) -> np.ndarray:
    """Station map with every node's voxels in its own station and tumour voxels in none."""
    out = stations.copy()
    labels = {s.station: s.label for s in load_stations()}
    table = np.zeros(max([2, *(n.instance for n in nodes)]) + 1, np.int64)
    table[3:] = -1  # instances of no node keep their station
    for n in nodes:
        table[n.instance] = labels[n.spec.station]
    lesion = np.flatnonzero(instance)
    lesion = lesion[instance.ravel()[lesion] < table.size]
    value = table[instance.ravel()[lesion]]
    keep = value >= 0
    out.ravel()[lesion[keep]] = value[keep]
    return out


def _truth(case_id: str, seed: int, index: int, preset: str, study: PatientStudy, params: AnatomyParams, disease: DiseaseSpec,
           frame: CanonicalFrame, tumour: PlacedTumour, nodes: list[PlacedNode], node_hu: dict[int, float], stations: np.ndarray, ct_grid: Grid,
           ct_settings: CtSettings, pet_settings: Any, header: Any, vendor: str) -> dict[str, Any]:
    side = disease.tumour.side
    n8 = stage(disease.malignant_stations, side, "tnm")
    paper = stage(disease.malignant_stations, side, "paper-2026")
    counts = np.bincount(stations.ravel(), minlength=256)
    placed = {n.instance: n for n in nodes}
    st: dict[str, Any] = {}
    for s in load_stations():
        own = [n for n in placed.values() if n.spec.station == s.station]
        mal = [n for n in own if n.spec.malignant]
        st[s.station] = {
            "malignant": s.station in disease.malignant_stations,
            "volume_ml": round(float(counts[s.label]) * ct_grid.voxel_volume_ml, 2),
            "n_nodes": len(own),
            "n_malignant_nodes": len(mal),
            "max_short_axis_mm": max((n.spec.short_axis_mm for n in own), default=0.0),
            "max_node_suv": max((n.spec.suv for n in own), default=0.0),
            "node_kinds": sorted({n.spec.kind for n in own}),
        }
    return {
        "case": case_id,
        "generator": {"name": GENERATOR, "version": __version__, "model": GENERATOR_MODEL, "seed": seed, "index": index, "preset": preset},
        "tumour_side": side,
        "n_stage": {"tnm8": n8.tnm8, "tnm9": n8.tnm9},
        "n_stage_reasons": list(n8.reasons),
        "n_stage_by_rule_set": {"tnm": {"tnm8": n8.tnm8, "tnm9": n8.tnm9}, "paper-2026": {"tnm8": paper.tnm8, "tnm9": paper.tnm9}},
        "stations": st,
        "tumour": {**disease.tumour.__dict__, "centre_lps": [round(float(v), 2) for v in frame.to_patient(tumour.centre)]},
        "nodes": [
            {**placed[i].spec.__dict__, "malignant": placed[i].spec.malignant, "hu_mean": node_hu.get(i), "instance": i,
             "centre_lps": [round(float(v), 2) for v in frame.to_patient(placed[i].shape.centre)]}
            for i in sorted(placed)
        ],
        "granulomatous_disease": disease.granulomatous,
        "patient": {"sex": study.sex, "age_years": study.age_years, "weight_kg": study.weight_kg, "height_m": study.height_m},
        "anatomy": params.as_dict(),
        "ct": {"contrast": ct_settings.contrast, "noise_hu": round(ct_settings.noise_hu, 2), "spacing_mm": list(ct_grid.spacing), "shape": list(ct_grid.shape)},
        "pet": {"vendor": vendor, "fwhm_mm": round(pet_settings.fwhm_mm, 2), "noise": round(pet_settings.noise, 3),
                "tissue_suv": {k: round(v, 3) for k, v in pet_settings.tissue_suv.items()},
                "header": header.as_dict() if header is not None else None},
    }
