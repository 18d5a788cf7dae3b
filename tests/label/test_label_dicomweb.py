"""The MONAI Label app on a DICOMweb datastore: a real Orthanc with its DICOMweb plugin (issue 18).

The Orthanc is the routing tests' test PACS (tests/route/route_harness.TestPacs) with the Debian
`orthanc-dicomweb` plugin enabled. The app lists the CT series as images, fetches the PET of the
same study as DICOM for the SUV, stores the SEG, SR and PDF of the inference back, and a label
submitted as 3D Slicer does (`PUT /datastore/label`) goes back as a DICOM SEG that the train task
reads. The credentials here are MONAI Label's datastore pair, which the app hands to the viewer's
proxy too (the OHIF test uses the documented DICOMWEB pair).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from nstage.outputs.dicom.series import output_config
from nstage.stationmap.atlas import load_atlases
from tests.label.label_server import DICOMWEB_PLUGIN, MONAILABEL, LabelServer, dicomweb_pacs
from tests.route.route_harness import (
    NODE_AET,
    PACS_AET,
    TestPacs,
    orthanc_available,
    send_study,
    study_uid_of,
    wait_for,
)

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

pytestmark = [pytest.mark.skipif(not MONAILABEL.is_file(), reason="no .venv-label: run `make setup` (it builds it)"),
              pytest.mark.skipif(not orthanc_available() or not DICOMWEB_PLUGIN.is_file(),
                                 reason="Orthanc with its DICOMweb plugin (Debian orthanc, orthanc-dicomweb) is not installed: "
                                        "scripts/install-system-deps.sh installs them")]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    pacs = dicomweb_pacs(tmp_path_factory.mktemp("dicomweb_pacs"))
    pacs.start()
    yield pacs
    pacs.stop()


def test_infer_on_an_orthanc_study_stores_its_outputs_and_a_submitted_label_goes_back_as_seg_for_training(
        orthanc: TestPacs, small_cohort: Path, pipeline_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    study = small_cohort / "case_0000" / "dicom"
    sent = send_study(study, orthanc.dicom_port, calling_aet=NODE_AET, called_aet=PACS_AET)
    assert sent.returncode == 0, sent.stderr[-2000:]
    study_uid = study_uid_of(study)
    wait_for(lambda: len(orthanc.instances_of_study(study_uid)) >= sum(1 for p in study.rglob("*") if p.is_file()), 60, "the study in Orthanc")
    before = {i["SOPInstanceUID"] for i in orthanc.instances_of_study(study_uid)}
    work = tmp_path_factory.mktemp("dicomweb_label")
    models = tmp_path_factory.mktemp("dicomweb_models")  # empty: the SUV slot, as pipeline_run
    srv = LabelServer(orthanc.dicomweb, work / "server.log", conf={"models": str(models)},
                      env={"MONAI_LABEL_DATASTORE_USERNAME": "pacs", "MONAI_LABEL_DATASTORE_PASSWORD": "pacs-test-password",
                           "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "cache")}).start()
    try:
        first_ct = pydicom.dcmread(next((study / "ct").iterdir()), stop_before_pixels=True)
        # the datastore's pair reaches the viewer's DICOMweb proxy too (Orthanc answers 401 without it)
        assert srv.get("/proxy/dicom/qido/studies").json()[0]["0020000D"]["Value"] == [study_uid]
        assert srv.get("/datastore/").json()["total"] == 1  # the CT series only (MONAI Label's filter Modality CT), not the PET
        images = [str(first_ct.SeriesInstanceUID)]  # image id = the CT's SeriesInstanceUID, as OHIF and Slicer ask for it
        result = srv.infer(images[0], work / "stations.nii.gz")
        run = json.loads((pipeline_run[1] / "result.json").read_text())
        # the same study as in the folder, SUV from the PET's DICOM headers: the same figures and calls as `nstage run`
        assert result["study"] == run["study"] and result["pet_suv"] == run["pet_suv"]
        assert result["n_stage"] == run["n_stage"]
        assert {k: v["suv_max"] for k, v in result["stations"].items()} == {k: v["suv_max"] for k, v in run["stations"].items()}
        ours, theirs = nib.load(work / "stations.nii.gz"), nib.load(pipeline_run[1] / "stations.nii.gz")
        assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj)) and np.allclose(ours.affine, theirs.affine)

        present = [int(v) for v in np.unique(np.asarray(ours.dataobj)) if v]
        names = {v: k for k, v in result["label_names"].items()}
        label_info = [{"name": names[v], "idx": v} for v in present]
        with (work / "stations.nii.gz").open("rb") as f:
            srv.put(f"/datastore/label?image={images[0]}&tag=final", files={"label": ("stations.nii.gz", f, "application/gzip")},
                    data={"params": json.dumps({"label_info": label_info})})
        own = output_config()["equipment"]["manufacturer"]
        new = sorted(i["Modality"] for i in orthanc.instances_of_study(study_uid) if i["SOPInstanceUID"] not in before)
        assert new == ["DOC", "SEG", "SEG", "SR"]  # the inference's SEG, SR and PDF report, then the submitted label
        assert sorted(result["stored_series"]) == ["DOC", "SEG", "SR"]
        found = [i for i in orthanc.client._get(f"/studies/{orthanc.client.find_studies(study_uid)[0]}/instances").json()
                 if orthanc.client.instance_tags(i["ID"]).get("Modality") == "SEG"
                 and orthanc.client.instance_tags(i["ID"]).get("Manufacturer") != own]
        assert len(found) == 1
        seg_file = work / "seg.dcm"
        orthanc.client.download_instance(found[0]["ID"], seg_file)
        seg = pydicom.dcmread(seg_file)
        assert seg.SOPClassUID == SEG_STORAGE and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == images[0]
        assert [s.SegmentLabel for s in seg.SegmentSequence] == [names[v] for v in present]
        # the train task reads the review from the PACS (not the app's own SEG): the map as submitted becomes an atlas
        trained = srv.post("/train/stations?run_sync=true", json={"classifier": False}).json()
        assert trained["reviewed_atlases"] == [f"reviewed_{images[0]}"], trained
        atlas = load_atlases([work / "cache" / next(p.name for p in (work / "cache").iterdir()) / "nstage" / "atlases"])[0]
        assert np.array_equal(atlas.labels, np.asarray(theirs.dataobj).transpose(2, 1, 0))
        text = srv.log_text()
        for value in (str(first_ct.PatientName), str(first_ct.PatientID)):
            assert value not in text
    finally:
        srv.stop()
