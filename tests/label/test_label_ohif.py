"""The MONAI Label app reviewed in a real viewer: OHIF (the build monailabel 0.8.5 serves at /ohif/) in Debian's
headless Chromium, on a real Orthanc with DICOMweb, the MONAI Label server on loopback (issue 39).

One session (tests/label/ohif_driver.py, run with .venv-label's python for selenium) does what a
reviewer does: opens the study in the MONAI Label mode, connects the panel, runs `stations`; opens
the app's station SEG in the Segmentation mode, deletes station 7, downloads the SEG and uploads it
from the study list. The tests check what the page showed against the server's own map, what the
inference stored in the PACS, and that the correction reaches the train task.

The study is the first synthetic `small` case with its instance numbers rising from head to feet
(as scanners number an axial series): for a CT numbered the other way the bundled OHIF downloads
the SEG with its slices reversed, which the app refuses (docs/monai-label.md). The screenshots stay
in tmp/ohif-test/ (gitignored), printed by the first test.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from nstage.ingest.study import load_ct_volume
from nstage.outputs.dicom.series import output_config
from nstage.outputs.report.style import load_style
from nstage.outputs.station_colours import station_colours
from nstage.stationmap.atlas import load_atlases
from nstage.outputs.dicom.reviewed_seg import read_station_seg
from nstage.stations import by_name, load_stations
from scripts.review import copy_numbered_head_to_feet
from tests.label.label_server import DICOMWEB_PLUGIN, LABEL_PYTHON, MONAILABEL, REPO, LabelServer, dicomweb_pacs
from tests.route.route_harness import NODE_AET, PACS_AET, TestPacs, orthanc_available, send_study, study_uid_of, wait_for

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTEFACTS = REPO / "tmp" / "ohif-test"
# Console errors the page logs that come from neither the app nor its answers: the fonts OHIF asks Google for
# (no network, by design), the app icon of OHIF's manifest (a path outside /ohif/ that the server does not serve),
# MONAI Label's own "no training is running" answer (404) to the panel's poll.
EXPECTED_CONSOLE_ERRORS = ("fonts.googleapis.com", "/assets/android-chrome-144x144.png", "/train/?check_if_running=true")

pytestmark = [pytest.mark.skipif(not MONAILABEL.is_file(), reason="no .venv-label: run `make setup` (it builds it)"),
              pytest.mark.skipif(not orthanc_available() or not DICOMWEB_PLUGIN.is_file(),
                                 reason="Orthanc with its DICOMweb plugin is not installed: scripts/install-system-deps.sh installs it"),
              pytest.mark.skipif(not CHROMIUM.is_file() or not CHROMEDRIVER.is_file(),
                                 reason="Debian chromium / chromium-driver are not installed: scripts/install-system-deps.sh installs them")]


def seg_description() -> str:
    """SeriesDescription of the app's station SEG, as OHIF's series list shows it."""
    return output_config()["series"]["seg"]["description"]


def segment_label(station: str) -> str:
    s = by_name()[station]
    return output_config()["seg"]["segment_label_format"].format(station=s.station, name=s.name)


@pytest.fixture(scope="module")
def study(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_numbered_head_to_feet(small_cohort / "case_0000" / "dicom", tmp_path_factory.mktemp("ohif_study") / "dicom")


@pytest.fixture(scope="module")
def pacs(study: Path, tmp_path_factory: pytest.TempPathFactory):
    orthanc = dicomweb_pacs(tmp_path_factory.mktemp("ohif_pacs")).start()
    sent = send_study(study, orthanc.dicom_port, calling_aet=NODE_AET, called_aet=PACS_AET)
    assert sent.returncode == 0, sent.stderr[-2000:]
    n = sum(1 for p in study.rglob("*") if p.is_file())
    wait_for(lambda: len(orthanc.instances_of_study(study_uid_of(study))) >= n, 60, "the study in Orthanc")
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def server(pacs: TestPacs, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("ohif_label")
    models = tmp_path_factory.mktemp("ohif_models")  # empty: the SUV slot, as the other label tests
    srv = LabelServer(pacs.dicomweb, work / "server.log", conf={"models": str(models)},
                      env={"MONAI_LABEL_DICOMWEB_USERNAME": "pacs", "MONAI_LABEL_DICOMWEB_PASSWORD": "pacs-test-password",
                           "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "cache")}).start()
    srv.work = work
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def session(server: LabelServer, study: Path) -> dict[str, Any]:
    """The reviewer's session in Chromium (one for the module); its record, with `out` the artefacts folder."""
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    cmd = [str(LABEL_PYTHON), str(REPO / "tests" / "label" / "ohif_driver.py"), "--server", server.url, "--study", study_uid_of(study),
           "--seg-description", seg_description(), "--segment", segment_label("7"), "--out", str(ARTEFACTS)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": ""})
    if done.returncode == 3:
        pytest.skip((ARTEFACTS / "chromium_unavailable.txt").read_text())
    record = json.loads((ARTEFACTS / "observations.json").read_text()) if (ARTEFACTS / "observations.json").is_file() else {}
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{json.dumps(record, indent=1)[-3000:]}\nscreenshots: {ARTEFACTS}"
    return {**record, "out": ARTEFACTS}


def app_objects(pacs: TestPacs, study_uid: str) -> dict[str, list[Path]]:
    """The study's instances in the PACS by kind: the app's (Manufacturer nstage) by modality, and reviews (other SEGs)."""
    own = output_config()["equipment"]["manufacturer"]
    out: dict[str, list[Path]] = {}
    for sid in pacs.client.find_studies(study_uid):
        for inst in pacs.client._get(f"/studies/{sid}/instances").json():
            tags = pacs.client.instance_tags(inst["ID"])
            if tags.get("Modality") not in ("SEG", "SR", "DOC"):
                continue
            kind = tags["Modality"] if tags.get("Manufacturer") == own else f"reviewed {tags['Modality']}"
            path = pacs.work / "fetched" / f"{inst['ID']}.dcm"
            path.parent.mkdir(exist_ok=True)
            pacs.client.download_instance(inst["ID"], path)
            out.setdefault(kind, []).append(path)
    return out


def station_map_of_seg(seg: Path, study: Path) -> np.ndarray:
    """A station SEG on the CT grid, valued by atlas/stations.json labels."""
    ct = load_ct_volume(study)
    values, names = read_station_seg(seg, ct.files, ct.grid)
    out = np.zeros(values.shape, np.uint16)
    for v, station in names.items():
        out[values == v] = by_name()[station].label
    return out


def test_ohif_monai_label_mode_shows_the_17_named_stations_on_the_ct(session: dict[str, Any], pacs: TestPacs, study: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    with capsys.disabled():
        print(f"\nOHIF screenshots: {session['out']}")
    shown = session["monai_label"]
    assert not shown["failed"]
    names = {s["index"]: s["label"] for s in shown["segments"]}
    assert sorted(names.values()) == sorted(s.station for s in load_stations())  # 17 segments named 1R ... 11L
    assert sorted(int(i) for i in shown["counts"]) == sorted(names)  # each one holds voxels
    # the page's label map, by segment name, is the app's station map on the CT's own grid (no flip)
    nx, ny, nz = shown["dims"]
    page = np.frombuffer((session["out"] / "labelmap.u8").read_bytes(), {"Uint8Array": np.uint8, "Uint16Array": np.uint16}[shown["dtype"]])
    page = page.reshape(nz, ny, nx)
    by_station = np.zeros(page.shape, np.uint16)
    for index, station in names.items():
        by_station[page == index] = by_name()[station].label
    [seg] = app_objects(pacs, study_uid_of(study))["SEG"]
    expected = station_map_of_seg(seg, study)
    assert np.array_equal(by_station, expected), f"{int((by_station != expected).sum())} voxels differ"
    assert session["page_errors"] == []
    errors = [c["message"] for c in session["console"] if c["level"] == "SEVERE"]
    assert [e for e in errors if not any(x in e for x in EXPECTED_CONSOLE_ERRORS)] == []
    for shot in ("2_monai_label_stations", "3_monai_label_stations_mid"):
        assert (session["out"] / f"{shot}.png").stat().st_size > 50_000


def test_the_inference_stores_its_seg_sr_and_pdf_report_in_the_study_with_the_reports_colours(
        session: dict[str, Any], pacs: TestPacs, server: LabelServer, study: Path) -> None:
    objects = app_objects(pacs, study_uid_of(study))
    assert {k: len(v) for k, v in objects.items() if not k.startswith("reviewed")} == {"SEG": 1, "SR": 1, "DOC": 1}
    seg, sr, pdf = (pydicom.dcmread(objects[k][0]) for k in ("SEG", "SR", "DOC"))
    ct = pydicom.dcmread(next((study / "ct").iterdir()), stop_before_pixels=True)
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == pdf.StudyInstanceUID == ct.StudyInstanceUID
    assert len({seg.SeriesInstanceUID, sr.SeriesInstanceUID, pdf.SeriesInstanceUID, ct.SeriesInstanceUID}) == 4
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF-")
    # OHIF's series list shows them beside the CT and PET (it cannot open the PDF: docs/monai-label.md)
    listed = session["correction"]["series_listed"]
    assert all(output_config()["series"][k]["description"] in listed for k in ("seg", "sr", "pdf")), listed
    # each segment in the colour the report outlines its station in (its call's colour, config/report.json)
    result = json.loads(next((server.work / "cache").glob(f"*/nstage/results/{ct.SeriesInstanceUID}.json")).read_text())
    colours = station_colours(result)
    style = load_style()
    assert colours == {s: style.call_colour(v["malignant"]) for s, v in result["stations"].items()}
    assert len(seg.SegmentSequence) == 17
    for item in seg.SegmentSequence:
        station = item.SegmentLabel.split()[0]
        assert tuple(item.RecommendedDisplayCIELabValue) == hd.color.CIELabColor.from_string(colours[station]).value


def test_a_correction_made_in_ohif_becomes_an_atlas_of_the_set_and_retrains(session: dict[str, Any], pacs: TestPacs,
                                                                            server: LabelServer, study: Path, small_cohort: Path) -> None:
    correction = session["correction"]
    for retry in session["segmentation_mode_retries"]:  # OHIF's own render crash under load (ohif_driver.Session.open_seg)
        print(f"Segmentation mode reopened after try {retry['attempt']}: {retry['failure']}")
    assert segment_label("7") in correction["segments_before"] and segment_label("7") not in correction["segments_after"]
    assert session["upload"]["completed"]
    objects = app_objects(pacs, study_uid_of(study))
    [reviewed] = objects["reviewed SEG"]  # the uploaded SEG, in the study, from the viewer (not the app's)
    ct_series = str(pydicom.dcmread(next((study / "ct").iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    assert pydicom.dcmread(reviewed).ReferencedSeriesSequence[0].SeriesInstanceUID == ct_series
    automatic = station_map_of_seg(objects["SEG"][0], study)
    corrected = np.where(automatic == by_name()["7"].label, 0, automatic)
    # the reviewer's N stage and tumour side, as a client records them for the classifier's retraining
    with (small_cohort / "cohort.csv").open(newline="") as f:
        facts = next(r for r in csv.DictReader(f) if r["case"] == "case_0000")
    server.put(f"/datastore/image/info?image={ct_series}", data={"info": json.dumps({k: facts[k] for k in ("tumour_side", "n_tnm8")})})
    trained = server.post("/train/stations?run_sync=true", json={"classifier": True, "epochs": 1}).json()
    assert trained["reviewed_atlases"] == [f"reviewed_{ct_series}"] and trained["classifier_cases"] == [ct_series], trained
    atlases = next((server.work / "cache").glob("*/nstage/atlases"))
    [atlas] = load_atlases([atlases])
    assert np.array_equal(atlas.labels, corrected)  # station 7 gone, every other station as the viewer showed it
    assert (atlases.parent / "models" / "station_cnn").is_dir()  # nstage train exported the retrained classifier
    assert str(atlases) in trained["atlas_set"]
