"""The MONAI Label app (label_app/) against a real `monailabel start_server` on loopback (issue 18).

Studies: two synthetic `small` studies, case_0000 as generated and case_0001_cut, a copy of
case_0001 whose CT stops at the lower border of station 1 (its true extent, truth_stations.nii.gz), as a CT
that does not reach the lung apices: the registration-quality check really flags it `suspect`
(stations outside the CT, the thorax scaled far from the atlas's). The server runs with an empty models folder (the SUV slot), as the
session's `pipeline_run` fixture (`nstage run` on case_0000), so the calls can be compared.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nstage.analysis.nrules import stage
from nstage.stationmap.atlas import load_atlases
from nstage.stations import load_stations
from tests.label.label_server import (
    MONAILABEL,
    REPO,
    LabelServer,
    cut_ct_below_station_1,
)

pytestmark = pytest.mark.skipif(not MONAILABEL.is_file(), reason="no .venv-label: run `make setup` (it builds it)")

@pytest.fixture(scope="module")
def studies(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("label_studies")
    (root / "case_0000").symlink_to(small_cohort / "case_0000", target_is_directory=True)
    assert cut_ct_below_station_1(small_cohort / "case_0001", root / "case_0001_cut") > 0
    rows = {r["case"]: r for r in csv.DictReader((small_cohort / "cohort.csv").open())}
    with (root / "cohort.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case", "tumour_side", "n_tnm8", "n_tnm9"])
        w.writeheader()
        w.writerow(rows["case_0000"])
        w.writerow({**rows["case_0001"], "case": "case_0001_cut"})
    return root


@pytest.fixture(scope="module")
def server(studies: Path, tmp_path_factory: pytest.TempPathFactory):
    models = tmp_path_factory.mktemp("label_models")  # empty: the SUV slot, as pipeline_run
    srv = LabelServer(str(studies), tmp_path_factory.mktemp("label_log") / "server.log", conf={"models": str(models)}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def inferred(server: LabelServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("label_infer") / "case_0000_stations.nii.gz"
    return out, server.infer("case_0000", out)


def test_info_lists_the_stations_task_with_the_17_station_names_in_order(server: LabelServer) -> None:
    info = server.get("/info/").json()
    task = info["models"]["stations"]
    assert task["type"] == "segmentation" and task["dimension"] == 3
    stations = load_stations()
    assert list(task["labels"]) == [s.station for s in stations] and len(stations) == 17
    assert info["labels"] == [s.station for s in stations]  # a list: OHIF's MONAI Label panel appends the models' labels to it
    assert [task["labels"][s.station] for s in stations] == [s.label for s in stations]
    assert "stations" in info["trainers"] and "review_first" in info["strategies"] and "review_priority" in info["scoring"]
    assert {"case_0000", "case_0001_cut"} <= set(info["datastore"]["objects"] if "objects" in info["datastore"] else
                                                 server.get("/datastore/?output=all").json()["objects"])


def test_infer_returns_the_nstage_stations_map_and_the_calls_of_nstage_run(inferred: tuple[Path, dict], small_cohort: Path,
                                                                             pipeline_run: tuple[Path, Path], tmp_path: Path) -> None:
    label_file, result = inferred
    done = subprocess.run([sys.executable, "-m", "nstage.cli", "stations", str(small_cohort / "case_0000" / "dicom"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ours, theirs = nib.load(label_file), nib.load(tmp_path / "stations.nii.gz")
    assert np.allclose(ours.affine, theirs.affine)
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
    assert len(np.unique(np.asarray(ours.dataobj))) > 10  # a real station map, not an empty one
    run = json.loads((pipeline_run[1] / "result.json").read_text())
    assert result["n_stage"] == run["n_stage"] and set(result["n_stage"]) == {"tnm8", "tnm9"}
    assert result["registration"]["status"] == json.loads((tmp_path / "registration.json").read_text())["status"] == "ok"
    assert list(result["stations"]) == list(run["stations"])
    for name, s in result["stations"].items():
        r = run["stations"][name]
        assert (s["malignant"], s["probability"], s["suv_max"], s["suv_mean"], s["suv_peak"]) == \
               (r["malignant"], r["probability"], r["suv_max"], r["suv_mean"], r["suv_peak"])
        assert s["index_node"] == r["index_node"]
    calls = [n for n, s in result["stations"].items() if s["malignant"]]
    n = stage(calls, result["tumour_side"], result["rule_set"])
    assert (n.tnm8, n.tnm9) == (result["n_stage"]["tnm8"], result["n_stage"]["tnm9"])


def test_review_first_returns_the_suspect_study_before_the_ok_one(server: LabelServer, inferred: tuple[Path, dict]) -> None:
    picked = server.post("/activelearning/review_first", json={}).json()
    assert picked["id"] == "case_0001_cut", picked
    assert picked["registration_status"] == "suspect" and picked["registration_reasons"]
    infos = {i: server.get(f"/datastore/image/info?image={i}").json()["nstage_review"] for i in ("case_0000", "case_0001_cut")}
    assert infos["case_0000"]["registration_status"] == inferred[1]["registration"]["status"] == "ok"
    assert infos["case_0001_cut"]["priority"] > infos["case_0000"]["priority"]
    assert any("stations_missing" in r for r in infos["case_0001_cut"]["registration_reasons"])


def test_a_corrected_label_in_another_segment_order_becomes_an_atlas_used_by_the_next_inference(
        server: LabelServer, inferred: tuple[Path, dict], studies: Path, tmp_path: Path) -> None:
    label_file, _ = inferred
    img = nib.load(label_file)
    ours = np.asarray(img.dataobj).astype(np.int64)
    stations = load_stations()
    # the reviewer's segment order: reversed, and station 7 edited away (a correction the atlas must carry)
    order = [s for s in reversed(stations)]
    value = {s.label: i + 1 for i, s in enumerate(order)}  # station label -> the value in the submitted file
    corrected = ours.copy()
    corrected[corrected == next(s.label for s in stations if s.station == "7")] = 0
    submitted = np.zeros_like(corrected)
    for lab, v in value.items():
        submitted[corrected == lab] = v
    sub_file = tmp_path / "case_0000_final.nii.gz"
    nib.save(nib.Nifti1Image(submitted.astype(np.uint8), img.affine), sub_file)
    label_info = [{"name": s.station, "idx": value[s.label]} for s in order if s.station != "7"]
    with sub_file.open("rb") as f:
        server.put("/datastore/label?image=case_0000&tag=final", files={"label": (sub_file.name, f, "application/gzip")},
                   data={"params": json.dumps({"label_info": label_info})})
    trained = server.post("/train/stations?run_sync=true", json={"classifier": True, "epochs": 1}).json()
    assert trained["reviewed_atlases"] == ["reviewed_case_0000"] and trained["classifier_cases"] == ["case_0000"], trained
    atlas_folder = studies / "monailabel" / "nstage" / "atlases"
    reviewed = load_atlases([atlas_folder])
    assert [a.name for a in reviewed] == ["reviewed_case_0000"]
    # remapped by name to atlas/stations.json labels (nibabel's [i, j, k] is nstage's [k, j, i])
    assert np.array_equal(reviewed[0].labels, corrected.transpose(2, 1, 0))
    assert not np.array_equal(reviewed[0].labels, submitted.transpose(2, 1, 0))
    assert (studies / "monailabel" / "nstage" / "models" / "station_cnn").is_dir()  # nstage train exported the retrained model
    second = server.infer("case_0001_cut", tmp_path / "second.nii.gz")
    names = [a["atlas"] for a in second["registration"]["atlases"]]
    assert names == ["reference", "reviewed_case_0000"], names
    assert second["atlas_set"][-1] == str(atlas_folder)
    assert second["model"] != inferred[1]["model"]  # inference now uses the retrained classifier


def test_logs_hold_no_patient_name_or_id(server: LabelServer, studies: Path, inferred: tuple[Path, dict]) -> None:
    import pydicom

    first = next(p for p in sorted((studies / "case_0000" / "dicom" / "ct").iterdir()))
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    text = server.log_text()
    assert "infer" in text.lower()
    for value in (str(ds.PatientName), str(ds.PatientID)):
        assert value and value not in text
