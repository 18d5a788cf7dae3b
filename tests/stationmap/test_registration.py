"""Atlas-to-patient registration: landmarks, pre-alignment, label transfer, quality gate, `nstage stations`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nstage import paths
from nstage.geometry import Grid, load_nifti
from nstage.progress import StageTimer
from nstage.stationmap.atlas import AtlasImage, load_atlases
from nstage.stationmap.label_transfer import (
    LabelSource,
    remove_islands,
    transfer_labels,
)
from nstage.stationmap.registration import map_stations
from nstage.stationmap.registration_quality import grade, order_violations
from nstage.stationmap.elastix_program import programs
from nstage.stationmap.registration_settings import load_settings
from nstage.stationmap.thorax_landmarks import ThoraxLandmarks, find_landmarks
from nstage.stationmap.working_grid import working_copy
from nstage.stations import by_label, by_name

REPO = Path(__file__).resolve().parents[2]
REAL_CT = REPO.parent / "shared" / "data" / "real-ct" / "Lung_Dx-A0001"
SEED = 515151  # not used in development, nor by the benchmark (900001 and up)
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")  # ITK SWIG


@pytest.fixture(scope="module")
def small_case():
    """One `small` synthetic case, in memory (CT in HU and the true stations on its grid)."""
    from nstage.synth.case import render_case

    return render_case("reg", SEED, 0, "small", "default", None, StageTimer())


@pytest.fixture(scope="module")
def atlases() -> list[AtlasImage]:
    return load_atlases([paths.atlas_dir()])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _centroid(mask: np.ndarray, grid: Grid) -> np.ndarray:
    return grid.index_to_lps(np.argwhere(mask)[:, ::-1].mean(axis=0))


def test_registration_maps_the_stations_of_a_synthetic_patient(small_case, atlases) -> None:
    result = map_stations(small_case.hu, small_case.ct_grid, atlases)
    assert result.status == "ok", result.grade.reasons
    labels = result.labels
    assert labels is not None and labels.shape == small_case.ct_grid.shape and labels.dtype == np.uint8
    truth = small_case.stations
    dice, errors = [], []
    for value in by_label():
        t, p = truth == value, labels == value
        assert p.any(), f"station {by_label()[value].station} missing"
        dice.append(_dice(p, t))
        errors.append(np.linalg.norm(_centroid(p, small_case.ct_grid) - _centroid(t, small_case.ct_grid)))
    assert np.mean(dice) >= 0.75 and min(dice) >= 0.4, np.round(dice, 2)
    assert np.median(errors) <= 5.0
    assert not np.any((labels > 0) & (small_case.hu < -300))  # nothing on air or lung
    report = result.report()
    json.dumps(report)  # serialisable
    assert report["figures"]["order_violations"] == 0 and report["stations_missing"] == []
    assert report["figures"]["lung_dice"] > 0.9 and report["figures"]["folded_fraction"] == 0.0


@pytest.mark.skipif(programs() is None, reason="Elastix's programs are not on PATH (scripts/install-system-deps.sh installs Debian's elastix)")
def test_elastixs_programs_map_the_stations_as_its_python_module_does(small_case, atlases) -> None:
    """The `program` runner (no ITK in the process) against itk-elastix on the same patient: same quality, nearly the
    same map (elastix 5.0.1 against itk-elastix's build: the random samples differ, so not bit for bit)."""
    base = load_settings()
    maps = {}
    for runner in ("program", "module"):
        result = map_stations(small_case.hu, small_case.ct_grid, atlases, replace(base, elastix_runner=runner))
        assert result.status == "ok", result.grade.reasons
        assert result.report()["backend"]["runner"] == runner
        maps[runner] = result.labels
    agree = [_dice(maps["program"] == v, maps["module"] == v) for v in by_label()]
    assert np.mean(agree) >= 0.9 and min(agree) >= 0.7, np.round(agree, 2)
    truth = [_dice(maps["program"] == v, small_case.stations == v) for v in by_label()]
    assert np.mean(truth) >= 0.75


def test_the_program_runner_says_what_is_missing(small_case, atlases, monkeypatch) -> None:
    from nstage.stationmap import elastix_program

    monkeypatch.setattr(elastix_program, "programs", lambda: None)
    with pytest.raises(RuntimeError, match="apt install elastix"):
        map_stations(small_case.hu, small_case.ct_grid, atlases, replace(load_settings(), elastix_runner="program"))


def test_auto_runs_the_programs_wherever_they_are_even_after_itk_is_loaded() -> None:
    """One runner per machine: `nstage run` (fresh) and a warm worker (ITK loaded by some stage) decide alike."""
    script = ("from nstage.stationmap.registration_settings import resolve_runner\n"
              "fresh = resolve_runner('auto')\n"
              "from nstage.stationmap.itk_bridge import itk_module\n"
              "itk_module().ParameterObject.New()\n"
              "print(fresh, resolve_runner('auto'), resolve_runner('module'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    auto = "program" if programs() is not None else "module"
    assert done.stdout.split() == [auto, auto, "module"]


@pytest.mark.parametrize("flip", ["left-right", "front-back", "head-feet"])
def test_wrong_patient_orientation_fails_without_stations(small_case, atlases, flip: str) -> None:
    axis = {"left-right": 2, "front-back": 1, "head-feet": 0}[flip]
    hu = np.ascontiguousarray(np.flip(small_case.hu, axis=axis))  # the image is mirrored, the header is not
    result = map_stations(hu, small_case.ct_grid, atlases)
    assert result.status == "failed" and result.labels is None
    assert result.grade.reasons


def test_abdomen_only_ct_fails_without_stations(small_case, atlases) -> None:
    grid = small_case.ct_grid
    n = 20  # the lowest 10 cm: upper abdomen with the lung bases
    low = Grid((n,) + grid.shape[1:], grid.spacing, grid.origin, grid.direction)
    result = map_stations(np.ascontiguousarray(small_case.hu[:n]), low, atlases)
    assert result.status == "failed" and result.labels is None
    assert any("lung_volume_ml" in r or "trachea" in r for r in result.grade.reasons)


def test_a_folding_registration_fails_and_yields_no_stations(small_case, atlases, monkeypatch) -> None:
    """The quality gate after Elastix: a deformation that folds is refused."""
    import nstage.stationmap.registration as registration

    def folding(fixed, moving, grid, mask, folder, settings):
        _, _, zs = grid.axis_coordinates()
        field = np.zeros(grid.shape + (3,))
        field[..., 2] = (40.0 * np.sin(zs / 6.0))[:, None, None]  # dz/dz = 1 + 6.7 cos(.): folds
        return field

    monkeypatch.setattr(registration, "run_elastix", folding)
    result = map_stations(small_case.hu, small_case.ct_grid, atlases)
    assert result.status == "failed" and result.labels is None
    assert any("folded_fraction" in r for r in result.grade.reasons)
    assert result.report()["stations_found"] == []


def test_landmarks_find_lungs_and_a_carina_between_stations_4_and_7(small_case) -> None:
    s = load_settings()
    work, grid = working_copy(small_case.hu, small_case.ct_grid, s.working_spacing_mm)
    lm = find_landmarks(work, grid, s.landmarks)
    assert lm.carina is not None and 2000 < lm.lung_volume_ml < 10000
    names = by_name()
    z4 = _centroid(small_case.stations == names["4R"].label, small_case.ct_grid)[2]
    z7 = _centroid(small_case.stations == names["7"].label, small_case.ct_grid)[2]
    assert z7 < lm.carina[2] < z4
    g = grade(lm.figures(), s.rules)
    assert g.status == "ok", g.reasons


def test_grade_applies_thresholds_and_missing_rules() -> None:
    rules = {"a": {"failed_below": 0.3, "suspect_below": 0.5, "message": "low a"},
             "b": {"suspect_above": 1, "missing": "suspect"}, "c": {"failed_above": 2}}
    assert grade({"a": 0.6, "b": 0, "c": 1}, rules).status == "ok"
    g = grade({"a": 0.4, "b": 0, "c": 1}, rules)
    assert g.status == "suspect" and "low a" in g.reasons[0]
    assert grade({"a": 0.2, "b": 0, "c": 1}, rules).status == "failed"
    assert grade({"a": 0.6, "b": None, "c": 1}, rules).status == "suspect"
    assert grade({"a": 0.6, "b": 0, "c": None}, rules).status == "failed"
    assert grade({"a": 0.2}, rules, only={"b"}).status == "ok"


def _toy_labels() -> LabelSource:
    """Two stations in 1 mm labels: a block of 4R and, touching it, a block of 7."""
    g = Grid((40, 40, 40), (1.0, 1.0, 1.0), (-20.0, -20.0, -20.0))
    labels = np.zeros(g.shape, np.uint8)
    labels[10:30, 10:30, 8:20] = by_name()["4R"].label
    labels[10:30, 10:30, 20:32] = by_name()["7"].label
    return LabelSource.from_labels(labels, g)


def test_labels_are_carried_without_holes_or_bleeding() -> None:
    source = _toy_labels()
    work = Grid((16, 16, 16), (3.0, 3.0, 3.0), (-22.5, -22.5, -22.5))
    xs, ys, zs = work.axis_coordinates()
    identity = np.stack(np.broadcast_arrays(xs[None, None, :], ys[None, :, None], zs[:, None, None]), axis=-1).astype(float)
    patient = Grid((30, 64, 64), (0.7, 0.7, 1.5), (-22.0, -22.0, -22.0))  # finer in-plane, thicker slices
    hu = np.zeros(patient.shape, np.float32)
    out, air = transfer_labels(hu, patient, identity, work, source, load_settings().transfer)
    assert air == 0.0
    pts = patient.index_to_lps(np.argwhere(np.ones(patient.shape, bool))[:, ::-1].astype(float)).reshape(patient.shape + (3,))
    for name, (lo, hi) in {"4R": (-12.0, 0.0), "7": (0.0, 12.0)}.items():  # x range of each block (mm); y, z: -10..10
        m = out == by_name()[name].label
        assert pts[m][:, 0].min() >= lo - 1.0 and pts[m][:, 0].max() <= hi + 1.0  # no bleeding
        core = (pts[..., 0] > lo + 1.5) & (pts[..., 0] < hi - 1.5) & np.all(np.abs(pts[..., 1:]) < 8.5, axis=-1)
        assert m[core].all()  # no holes
        assert abs(m.sum() * patient.voxel_volume_ml - 4.8) < 0.25 * 4.8  # 12 x 20 x 20 mm
    hu[:, :, :32] = -800.0  # the patient's right half is lung: no station there
    out, air = transfer_labels(hu, patient, identity, work, source, load_settings().transfer)
    assert not np.any(out[:, :, :32]) and air is not None and air > 0.3


def test_several_atlases_are_fused_by_majority_vote(small_case, atlases, monkeypatch) -> None:
    """Three atlases (Elastix replaced by the pre-alignment alone, for speed): two agree, one is off."""

    import nstage.stationmap.registration as registration

    monkeypatch.setattr(registration, "run_elastix", lambda fixed, moving, grid, *a: np.zeros(grid.shape + (3,)))
    base = atlases[0]
    twin = replace(base, name="twin")
    shifted = np.zeros_like(base.labels)
    shifted[:, :, 12:] = base.labels[:, :, :-12]  # 12 mm to the patient's left
    odd = replace(base, name="odd", labels=shifted)
    single = map_stations(small_case.hu, small_case.ct_grid, [base])
    fused = map_stations(small_case.hu, small_case.ct_grid, [odd, base, twin])
    assert single.labels is not None and fused.labels is not None
    assert fused.report()["fusion"] == "majority vote" and len(fused.report()["atlases"]) == 3
    assert np.array_equal(fused.labels, single.labels)  # the two agreeing atlases outvote the odd one


def test_islands_are_removed_but_large_pieces_kept() -> None:
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[2:8, 2:8, 2:8] = 3
    labels[2:8, 12:18, 12:18] = 3  # a second large piece
    labels[9, 19, 19] = 3  # a speck
    remove_islands(labels, 0.1)
    assert labels.sum() == 3 * 2 * 216 and labels[9, 19, 19] == 0


def test_order_violations_spots_swapped_stations() -> None:
    g = Grid((30, 10, 30), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    labels = np.zeros(g.shape, np.uint8)
    names = {v: s.station for v, s in by_label().items()}
    n = by_name()
    labels[20:25, 2:5, 2:8] = n["2R"].label
    labels[10:15, 2:5, 2:8] = n["4R"].label
    labels[10:15, 2:5, 20:28] = n["4L"].label
    assert order_violations(labels, g, names, [["2R", "4R"]], [["4R", "4L"]]) == []
    swapped = np.flip(labels, axis=2)
    assert order_violations(swapped, g, names, [["2R", "4R"]], [["4R", "4L"]]) == ["4R not on the right of 4L"]


def _run_stations(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nstage.cli", "stations", *args], capture_output=True, text=True, cwd=REPO)


def test_stations_command_writes_the_map_on_the_ct_grid(small_cohort: Path, tmp_path: Path) -> None:
    from nstage.ingest.study import load_ct_volume

    study = small_cohort / "case_0000" / "dicom"
    run = _run_stations([str(study), "--out", str(tmp_path / "out"), "--preview"])
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "registration.json").read_text())
    assert report["status"] == "ok" and len(report["stations_found"]) == 17
    assert {"ncc_thorax", "lung_dice", "folded_fraction", "heart_offset_mm"} <= set(report["figures"])
    labels, grid = load_nifti(tmp_path / "out" / "stations.nii.gz")
    ct = load_ct_volume(study)
    assert labels.shape == ct.grid.shape and np.allclose(grid.affine, ct.grid.affine, atol=1e-3)
    truth, _ = load_nifti(small_cohort / "case_0000" / "truth_stations.nii.gz")
    assert np.mean([_dice(labels == v, truth == v) for v in by_label()]) > 0.7
    assert (tmp_path / "out" / "stations.png").stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_stations_command_refuses_an_abdomen_ct(small_cohort: Path, tmp_path: Path) -> None:
    import pydicom

    ct_dir = next(p for p in (small_cohort / "case_0000" / "dicom").iterdir() if p.is_dir() and "ct" in p.name.lower())
    files = sorted(ct_dir.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    (tmp_path / "abdomen").mkdir()
    for f in files[:20]:  # the lowest 10 cm
        shutil.copy(f, tmp_path / "abdomen" / f.name)
    out = tmp_path / "out"
    run = _run_stations([str(tmp_path / "abdomen"), "--out", str(out)])
    assert run.returncode != 0 and run.stderr.strip().splitlines()[-1].startswith("error:")
    assert json.loads((out / "registration.json").read_text())["status"] == "failed"
    assert not (out / "stations.nii.gz").exists()


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="the shared real CT is not on this machine")
@pytest.mark.parametrize("backend", ["elastix", "torch"])
def test_real_ct_gets_ordered_stations_in_soft_tissue_or_a_warning(tmp_path: Path, backend: str) -> None:
    from nstage.ingest.study import load_ct_volume

    run = _run_stations([str(REAL_CT), "--out", str(tmp_path / "out"), "--registration", backend])
    report = json.loads((tmp_path / "out" / "registration.json").read_text())
    assert report["backend"]["name"] == backend
    if report["status"] == "failed":
        assert run.returncode != 0
        return
    assert run.returncode == 0, run.stderr
    labels, _ = load_nifti(tmp_path / "out" / "stations.nii.gz")
    ct = load_ct_volume(REAL_CT)
    hu = ct.array
    assert np.mean(hu[labels > 0] < -300) == 0.0  # not in lung or airway
    if report["status"] == "ok":
        assert report["figures"]["order_violations"] == 0 and len(report["stations_found"]) >= 15
        names = by_name()
        x = {n: _centroid(labels == names[n].label, ct.grid)[0] for n in ("2R", "2L", "4R", "4L", "10R", "10L")}
        assert x["2R"] < x["2L"] and x["4R"] < x["4L"] and x["10R"] < x["10L"]  # LPS: +x is the patient's left


def _landmarks(carina_z: float, lo_z: float, hi_z: float, width: float, cut_top: bool = False) -> ThoraxLandmarks:

    g = Grid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    empty = np.zeros(g.shape, bool)
    return ThoraxLandmarks(g, empty, empty, empty, 5000.0, np.array([-width / 2, -80.0, lo_z]), np.array([width / 2, 80.0, hi_z]),
                           False, cut_top, np.array([0.0, 0.0, carina_z]), hi_z + 30.0, 120.0, 15.0, 55.0)


def test_prealignment_maps_base_carina_and_apex_separately() -> None:
    from nstage.stationmap.prealignment import prealign

    patient = _landmarks(carina_z=-250.0, lo_z=-430.0, hi_z=-165.0, width=250.0)  # short upper thorax
    atlas = _landmarks(carina_z=-7.5, lo_z=-190.0, hi_z=144.0, width=250.0)
    pre = prealign(patient, atlas, (0.6, 2.2), 15.0, (-450.0, -120.0))
    z = pre.apply(np.array([[0.0, 0.0, -430.0], [0.0, 0.0, -250.0], [0.0, 0.0, -165.0]]))[:, 2]
    assert z[1] == pytest.approx(-7.5, abs=0.1) and np.allclose(z[[0, 2]], [-190.0, 144.0], atol=6.0)
    assert np.all(np.diff(pre.z_atlas) > 0)  # monotone: invertible
    assert pre.raw_scales.max() == pytest.approx((144.0 + 7.5) / 85.0)
    cut = prealign(_landmarks(-250.0, -430.0, -165.0, 250.0, cut_top=True), atlas, (0.6, 2.2), 15.0, (-450.0, -120.0))
    above = cut.apply(np.array([0.0, 0.0, -150.0]))[2] - cut.apply(np.array([0.0, 0.0, -200.0]))[2]
    assert above == pytest.approx(50.0, abs=1.0)  # apex not seen: the x/y scale (1) is used above the carina
