"""The MONAI Deploy application (app.py): the Holoscan graph gives `nstage run`'s decisions.

- the app on a small synthetic study (empty models folder: the SUVmax slot), invoked through the
  HOLOSCAN_* variables only, writes the same decisions and the same output files as `nstage run`;
- bad input given with -i/-o/-m ends with an `error:` line, a non-zero exit and no output folder;
- nstage.ingest.study_from_series builds, from the SDK loader's and selector's objects, the study that
  nstage.ingest.study.load_study builds from the folder, on a study with competing CT and PET series,
  and in every lossless transfer syntax and as enhanced multi-frame objects;
- the app on a compressed enhanced study decides as `nstage run` on the single-frame study.

Each app run is a subprocess (`python app.py`): Holoscan wants a 32 MB stack, which app.py sets
by re-executing itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, generate_uid

from tests.conftest import REPO
from tests.encodings import LOSSLESS, legacy_enhanced_study, reencode_study
from tests.study_factory import edit_series, write_phantom_study
from tests.ingest.test_study import BAD_STUDIES

if importlib.util.find_spec("holoscan") is None:  # checked without importing it into the test process
    pytest.skip("holoscan / monai-deploy-app-sdk is not installed", allow_module_level=True)

HOLOSCAN_VARIABLES = ("HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH")


def _env(**holoscan: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HOLOSCAN_VARIABLES}
    return {**env, **holoscan, "PYTHONWARNINGS": "ignore"}


def _app(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=900)


def _decisions(result: dict) -> dict:
    return {
        "study": result["study"],
        "tumour_side": result["tumour_side"],
        "n_stage": result["n_stage"],
        "calls": {s: v["malignant"] for s, v in result["stations"].items()},
        "baseline": {k: v.get("n_stage") for k, v in result["baseline"].items()},
        "model": result["model"]["name"],
    }


def test_app_with_the_shipped_model_gives_nstage_runs_probabilities(shipped_model_run: tuple[Path, Path], tmp_path: Path) -> None:
    """The exported network loads in both and gives the same station probabilities (to 1e-5)."""
    case, ref_out = shipped_model_run
    out = tmp_path / "out"
    env = _env(HOLOSCAN_INPUT_PATH=str(case / "dicom"), HOLOSCAN_OUTPUT_PATH=str(out), HOLOSCAN_MODEL_PATH=str(REPO / "models"))
    res = _app([], env)
    assert res.returncode == 0, res.stderr[-3000:]
    ours, ref = json.loads((out / "result.json").read_text()), json.loads((ref_out / "result.json").read_text())
    meta = json.loads((REPO / "models" / "station_cnn" / "metadata.json").read_text())
    assert ours["model"]["name"] == ref["model"]["name"] == meta["name"] and ours["model"]["threshold"] == meta["threshold"]
    assert _decisions(ours) == _decisions(ref)
    for station, values in ref["stations"].items():
        assert ours["stations"][station]["probability"] == pytest.approx(values["probability"], abs=1e-5)
        if abs(values["probability"] - meta["threshold"]) > 1e-4:  # (result.json rounds probabilities to 4 places)
            assert values["malignant"] == (values["probability"] >= meta["threshold"])  # the model's own threshold


def test_app_decides_as_nstage_run(pipeline_run: tuple[Path, Path], tmp_path: Path) -> None:
    case, ref_out = pipeline_run
    models = tmp_path / "models"
    models.mkdir()
    out = tmp_path / "out"
    env = _env(HOLOSCAN_INPUT_PATH=str(case / "dicom"), HOLOSCAN_OUTPUT_PATH=str(out), HOLOSCAN_MODEL_PATH=str(models))
    res = _app([], env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "below the recommended minimum" not in res.stderr  # app.py raised the stack limit itself

    ours, ref = json.loads((out / "result.json").read_text()), json.loads((ref_out / "result.json").read_text())
    assert _decisions(ours) == _decisions(ref)
    for station, values in ref["stations"].items():  # same volumes and registration: same measurements
        assert ours["stations"][station]["suv_max"] == pytest.approx(values["suv_max"], abs=1e-3)
        assert ours["stations"][station]["volume_ml"] == pytest.approx(values["volume_ml"], rel=1e-3)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref_out.iterdir())
    assert {"load study", "stations (atlas registration)", "station classifier", "N rules"} <= set(ours["timings_s"])
    seg = next(p for p in out.glob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG")
    assert pydicom.dcmread(seg, stop_before_pixels=True).FrameOfReferenceUID
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "staging folder left behind"


BAD_APP_INPUT = [
    *[(name, breaks, message) for name, breaks, message in BAD_STUDIES if name in ("no-pet", "not-dicom")],
    ("no-models", None, r"models folder"),
]


@pytest.mark.parametrize(("name", "breaks", "message"), BAD_APP_INPUT, ids=[b[0] for b in BAD_APP_INPUT])
def test_bad_input_is_one_error_line_and_no_output(tmp_path: Path, name: str, breaks, message: str) -> None:
    study = write_phantom_study(tmp_path / "study")
    models = tmp_path / "models"
    models.mkdir()
    if breaks is None:
        shutil.rmtree(models)
    else:
        breaks(study)
    out = tmp_path / "out"
    res = _app(["-i", str(study), "-o", str(out), "-m", str(models)], _env())
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), res.stderr[-2000:]
    if name == "not-dicom":  # the SDK loader finds no study: the app says so in its own words
        assert "no DICOM files in" in last
    else:
        assert re.search(message, last), last
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "staging folder left behind"


# --- the SDK's objects give the study nstage.ingest.study.load_study gives ------------------------------

SDK_STUDY_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from monai.deploy.core import Fragment
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from nstage.ingest.series_selection import load_rules, rules_path, select_ct_pet
from nstage.ingest.dicom_index import index_folder
from nstage.ingest.study import load_study
from nstage.ingest.study_from_series import disagreements, index_from_sdk, select_from_sdk, selected_uids, study_from_sdk

root = Path(sys.argv[1])
fragment = Fragment()
studies = DICOMDataLoaderOperator(fragment, name="loader").load_data_to_studies(root)
selector = DICOMSeriesSelectorOperator(fragment, rules=rules_path().read_text(), all_matched=True, name="selector")
selection = selector.filter(json.loads(rules_path().read_text()), studies, all_matched=True)
index = index_from_sdk(root, studies)
ref_index = index_folder(root)
chosen, ref = select_from_sdk(root, studies, selection), select_ct_pet(ref_index)
study, ref_study = study_from_sdk(root, studies, selection), load_study(root)
print(json.dumps({
    "sdk_candidates": {k: sorted(v) for k, v in selected_uids(selection).items()},
    "disagreements": disagreements(index, selected_uids(selection)),
    "same_series_order": [s.series_uid for s in index.series] == [s.series_uid for s in ref_index.series],
    "same_first_files": [s.instances[0].path.name for s in index.series] == [s.instances[0].path.name for s in ref_index.series],
    "chosen": [chosen.ct.series_uid, chosen.pet.series_uid],
    "expected": [ref.ct.series_uid, ref.pet.series_uid],
    "same_ct": bool(np.array_equal(study.ct.array, ref_study.ct.array) and np.array_equal(study.ct.grid.affine, ref_study.ct.grid.affine)),
    "same_suv": bool(np.array_equal(study.pet.array, ref_study.pet.array) and np.array_equal(study.pet.grid.affine, ref_study.pet.grid.affine)),
    "same_files": study.ct.files == ref_study.ct.files and study.pet.files == ref_study.pet.files,
}))
"""


def _copy_series(src: Path, dst: Path, number: int, edit=None, keep=lambda k: True) -> str:
    """A copy of a written series as a new series (new UIDs); returns its Series Instance UID."""
    shutil.copytree(src, dst)
    for k, path in enumerate(sorted(dst.iterdir())):
        if not keep(k):
            path.unlink()
    uid = generate_uid()

    def renew(ds: pydicom.Dataset, k: int) -> None:
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, number
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if edit:
            edit(ds)

    edit_series(dst, renew)
    return uid


def test_sdk_objects_give_the_study_load_study_gives(tmp_path: Path) -> None:
    """Competing series: a NAC PET and a thicker-slice CT (listed first) and a secondary CT that the
    rules exclude; the SDK's candidates ranked by nstage's preferences pick the CT and AC PET that
    load_study picks, with identical volumes."""
    root = write_phantom_study(tmp_path / "study")
    _copy_series(root / "pet", root / "a_pet_nac", 4, edit=lambda ds: setattr(ds, "CorrectedImage", ["DECY", "NORM"]))
    _copy_series(root / "ct", root / "a_ct_thick", 5, keep=lambda k: k % 2 == 0)
    _copy_series(root / "ct", root / "b_ct_secondary", 6, edit=lambda ds: setattr(ds, "ImageType", ["DERIVED", "SECONDARY", "AXIAL"]))

    def big_stack() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (32 * 1024 * 1024, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    res = subprocess.run([sys.executable, "-c", SDK_STUDY_SCRIPT, str(root)], capture_output=True, text=True, cwd=REPO,
                         preexec_fn=big_stack, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got["sdk_candidates"]["CT"]) == 2 and len(got["sdk_candidates"]["PET"]) == 2  # the secondary CT is excluded
    assert got["disagreements"] == []
    assert got["same_series_order"] and got["same_first_files"]
    assert got["chosen"] == got["expected"]
    assert got["same_ct"] and got["same_suv"] and got["same_files"]


@pytest.mark.parametrize(("env", "expected"), [
    ({"NSTAGE_RULES": "paper-2026", "NSTAGE_TUMOUR_SIDE": "L"}, "paper-2026 L"),
    ({}, "tnm None"),
    ({"NSTAGE_RULES": "tnm8-typo"}, "error"),
    ({"NSTAGE_TUMOUR_SIDE": "Q"}, "error"),
])
def test_run_options_come_from_the_environment(env: dict[str, str], expected: str) -> None:
    """The MAP's way to pass `nstage run`'s --rules / --tumour-side; bad values fail before any work."""
    code = ("import app\nfrom nstage.errors import InputError\n"
            "try:\n    o = app.options_from_env()\n    print(o.rules, o.tumour_side)\n"
            "except InputError as e:\n    print('error')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={**_env(), **env}, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == expected, done.stderr[-1500:]


# --- studies as hospitals send them: the SDK loader path reads every transfer syntax and enhanced objects --------

SDK_ENCODINGS_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from monai.deploy.core import Fragment
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from nstage.ingest.series_selection import rules_path
from nstage.ingest.study import load_study
from nstage.ingest.study_from_series import study_from_sdk

reference = load_study(sys.argv[1])
rules = rules_path().read_text()
out = {}
for root in sys.argv[2:]:
    fragment = Fragment()
    studies = DICOMDataLoaderOperator(fragment, name="loader").load_data_to_studies(Path(root))
    selection = DICOMSeriesSelectorOperator(fragment, rules=rules, all_matched=True, name="selector").filter(json.loads(rules), studies, all_matched=True)
    study = study_from_sdk(root, studies, selection)
    out[Path(root).name] = [float(np.abs(study.ct.array - reference.ct.array).max()), float(np.abs(study.pet.array - reference.pet.array).max()),
                            bool(np.array_equal(study.ct.grid.affine, reference.ct.grid.affine) and np.array_equal(study.pet.grid.affine, reference.pet.grid.affine))]
print(json.dumps(out))
"""


def _big_stack() -> None:
    resource.setrlimit(resource.RLIMIT_STACK, (32 * 1024 * 1024, resource.getrlimit(resource.RLIMIT_STACK)[1]))


def test_sdk_loader_path_reads_every_lossless_syntax_and_enhanced_objects(small_cohort: Path, tmp_path: Path) -> None:
    """The app's loader (the SDK's DICOMDataLoaderOperator and selector, then nstage.ingest.study_from_series) gives the
    uncompressed study's volumes for every lossless transfer syntax and for Legacy Converted Enhanced CT / PET."""
    source = small_cohort / "case_0000" / "dicom"
    roots = [reencode_study(source, tmp_path / name, name) for name in LOSSLESS]
    roots.append(legacy_enhanced_study(source, tmp_path / "legacy-enhanced"))
    res = subprocess.run([sys.executable, "-c", SDK_ENCODINGS_SCRIPT, str(source), *map(str, roots)], capture_output=True, text=True,
                         cwd=REPO, preexec_fn=_big_stack, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {root.name: [0.0, 0.0, True] for root in roots}


def test_app_on_a_compressed_enhanced_study_decides_as_nstage_run(pipeline_run: tuple[Path, Path], tmp_path: Path) -> None:
    """Legacy Converted Enhanced CT and PET with JPEG 2000 lossless frames through app.py: nstage run's decisions on the
    single-frame study, and a SEG referencing the multi-frame CT, which dciodvfy accepts with the SR and the PDF."""
    from nstage.outputs.validators import validate_file

    case, ref_out = pipeline_run
    study = legacy_enhanced_study(case / "dicom", tmp_path / "study", transfer_syntax=str(JPEG2000Lossless))
    models = tmp_path / "models"
    models.mkdir()
    out = tmp_path / "out"
    res = _app(["-i", str(study), "-o", str(out), "-m", str(models)], _env())
    assert res.returncode == 0, res.stderr[-3000:]
    ours, ref = json.loads((out / "result.json").read_text()), json.loads((ref_out / "result.json").read_text())
    assert {k: v for k, v in _decisions(ours).items() if k != "study"} == {k: v for k, v in _decisions(ref).items() if k != "study"}
    seg = next(p for p in out.glob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG")
    ct = next(p for p in study.iterdir() if p.name.startswith("ct"))
    referenced = {r.ReferencedSOPInstanceUID for s in pydicom.dcmread(seg, stop_before_pixels=True).ReferencedSeriesSequence
                  for r in s.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID}
    for path in out.glob("*.dcm"):  # SEG, SR and PDF with the enhanced objects as their sources
        for report in validate_file(path, skip=("DicomSRValidator",)):
            assert report.ok, report.summary()
