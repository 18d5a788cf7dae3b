"""The routing node with real servers on loopback: `nstage route serve` (its own Orthanc and worker)
and a second Orthanc acting as the hospital PACS; studies sent with dcmtk's storescu.

Scenario (one node, run once for the module): an unknown calling AE tries to store; the PACS sends a
PET/CT study, a CT-only study and a broken PET/CT study (PET without PatientWeight); the worker is
killed with SIGKILL while the pipeline runs on the PET/CT study; the serve process restarts it; the
PET/CT study is sent again unchanged; SIGTERM stops the node. A second test keeps the PACS down
for 60 s while the node sends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO
from tests.route.route_fake_pipeline import BASIC_TEXT_SR, tiny_dicom
from tests.route.route_harness import (
    Node,
    TestPacs,
    fast_route_config,
    needs_orthanc,
    patient_identity,
    send_study,
    study_uid_of,
    study_variant,
    wait_for,
)

pytestmark = [pytest.mark.slow, needs_orthanc()]

RESULT_MODALITIES = {"SEG": "1.2.840.10008.5.1.4.1.1.66", "SR": "1.2.840.10008.5.1.4.1.1.88.", "DOC": "1.2.840.10008.5.1.4.1.1.104.1"}
PIPELINE_WAIT_S = 400  # the pipeline on a small study takes about 30 s on an idle 2-core machine; tests share the cores


@dataclass
class Scenario:
    node: Node
    pacs: TestPacs
    studies: dict[str, Path]
    refused: subprocess.CompletedProcess
    killed_pid: int
    pids_at_stop: list[int] = field(default_factory=list)
    stop_rc: int | None = None
    status_text: str = ""
    resend_log: str = ""
    pacs_instances: list[dict[str, str]] = field(default_factory=list)
    http_codes: dict[str, int] = field(default_factory=dict)


def _job_for(node: Node, study: Path):
    uid = study_uid_of(study)
    jobs = [j for j in node.jobs() if j.study_uid == uid]
    return jobs[-1] if jobs else None


def _children_pids(node: Node) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "cmdline").read_bytes().replace(b"\0", b" ").find(str(node.work).encode()) >= 0:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def scenario(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    work = tmp_path_factory.mktemp("route")
    src = small_cohort / "case_0000" / "dicom"
    studies = {
        "petct": study_variant(src, work / "studies" / "petct"),
        "ct_only": study_variant(src, work / "studies" / "ct_only", keep_modalities=("CT",)),
        "broken": study_variant(src, work / "studies" / "broken", edit=lambda ds: ds.pop("PatientWeight", None) if ds.Modality == "PT" else None),
    }
    pacs = TestPacs(work / "pacs").start()
    node = Node(work / "node", pacs.dest, fast_route_config(work / "route.json"))
    try:
        node.start()
        refused = send_study(studies["petct"], node.port, calling_aet="INTRUDER")
        for name in ("petct", "ct_only", "broken"):
            assert send_study(studies[name], node.port).returncode == 0
        wait_for(lambda: "atlas registration" in node.log_text(), PIPELINE_WAIT_S, "the pipeline to run on the PET/CT study")
        killed = node.worker_pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: node.worker_pid() not in (None, killed), 60, "the serve process to restart the worker")
        wait_for(lambda: all((j := _job_for(node, s)) is not None and j.state in ("done", "failed", "ignored") for s in studies.values()),
                 PIPELINE_WAIT_S, "every study to end done, failed or ignored")
        mark = len(node.log_text())
        resend = work / "studies" / "resend"  # the same study, plus an SR as if the PACS routed our results back
        shutil.copytree(studies["petct"], resend)
        tiny_dicom(resend / "routed_back_sr.dcm", study_uid_of(studies["petct"]), BASIC_TEXT_SR, "SR", patient_identity(studies["petct"])[1])
        assert send_study(resend, node.port).returncode == 0
        wait_for(lambda: "unchanged since job" in node.log_text()[mark:], 60, "the re-sent study to be recognised")
        status = subprocess.run([sys.executable, "-m", "nstage.cli", "route", "status", "--work", str(node.work)], capture_output=True,
                                text=True, cwd=REPO, timeout=60)
        s = Scenario(node, pacs, studies, refused, killed, status_text=status.stdout + status.stderr, resend_log=node.log_text()[mark:])
        s.pacs_instances = pacs.instances_of_study(study_uid_of(studies["petct"]))
        url, creds = f"http://127.0.0.1:{node.http_port}/system", json.loads((node.work / "credentials.json").read_text())
        s.http_codes = {k: requests.get(url, auth=a, timeout=10).status_code
                        for k, a in (("none", None), ("wrong", (creds["user"], "wrong")), ("generated", (creds["user"], creds["password"])))}
        s.pids_at_stop = _children_pids(node)
        s.stop_rc = node.stop()
        yield s
    finally:
        node.stop()
        pacs.stop()


def test_unknown_calling_ae_is_refused(scenario: Scenario) -> None:
    assert scenario.refused.returncode != 0
    assert "Calling AE Title Not Recognized" in scenario.refused.stdout + scenario.refused.stderr
    assert "INTRUDER" in (scenario.node.work / "logs" / "orthanc.log").read_text()  # Orthanc logged the refusal


def test_pet_ct_study_is_processed_after_the_worker_was_killed(scenario: Scenario) -> None:
    """Flow without the DICOM writers: queued -> running (killed) -> run again -> done, result.json persisted."""
    job = _job_for(scenario.node, scenario.studies["petct"])
    assert job.state == "done" and job.attempts == 2, job
    out = scenario.node.work / "jobs" / f"{job.id:06d}" / "output"
    result = json.loads((out / "result.json").read_text())
    assert result["study"]["study_instance_uid"] == job.study_uid and result["n_stage"]["tnm8"].startswith("N")
    assert all(o.sent_at for o in scenario.node.outputs(job.id))
    assert "worker exited with signal SIGKILL" in scenario.node.log_text()
    assert len([j for j in scenario.node.jobs() if j.study_uid == job.study_uid]) == 1


def test_pacs_holds_seg_sr_and_pdf_once(scenario: Scenario) -> None:
    """Needs `nstage run` to write the SEG, SR and Encapsulated PDF (*.dcm) into its output folder."""
    job = _job_for(scenario.node, scenario.studies["petct"])
    outputs = scenario.node.outputs(job.id)
    held = scenario.pacs_instances
    modalities = sorted(i["Modality"] for i in held)
    assert modalities == ["DOC", "SEG", "SR"], f"the PACS holds {modalities} for the study; outputs recorded: {[o.name for o in outputs]}"
    for inst in held:
        assert inst["SOPClassUID"].startswith(RESULT_MODALITIES[inst["Modality"]])
    assert sorted(i["SOPInstanceUID"] for i in held) == sorted(o.sop_instance_uid for o in outputs)  # exactly the recorded ones, once


def test_ct_only_study_is_ignored_with_a_log_line(scenario: Scenario) -> None:
    job = _job_for(scenario.node, scenario.studies["ct_only"])
    assert job.state == "ignored" and job.attempts == 0 and "not a PET/CT study (series modalities: CT)" in job.error
    assert f"study {job.study_key} ignored: not a PET/CT study" in scenario.node.log_text()


def test_broken_study_ends_failed_with_its_error(scenario: Scenario) -> None:
    job = _job_for(scenario.node, scenario.studies["broken"])
    assert job.state == "failed" and job.attempts == 1
    assert "PatientWeight" in job.error
    assert scenario.node.outputs(job.id) == []


def test_resent_unchanged_study_is_not_processed_again(scenario: Scenario) -> None:
    """Re-sent with an extra SR in the study (results routed back): the CT and PET are unchanged, no new run."""
    job = _job_for(scenario.node, scenario.studies["petct"])
    assert f"unchanged since job {job.id} (done)" in scenario.resend_log
    assert "pipeline attempt" not in scenario.resend_log
    assert len([j for j in scenario.node.jobs() if j.study_uid == job.study_uid]) == 1


def test_status_lists_each_state(scenario: Scenario) -> None:
    text = scenario.status_text
    assert "done 1" in text and "failed 1" in text and "ignored 1" in text
    lines = text.splitlines()
    for state in ("done", "failed", "ignored"):
        assert any(f" {state} " in line for line in lines[2:]), text


def test_logs_carry_no_patient_names_or_ids(scenario: Scenario) -> None:
    name, pid = patient_identity(scenario.studies["petct"])
    logs = scenario.node.log_text() + scenario.node.stderr_text() + (scenario.node.work / "logs" / "orthanc.log").read_text() + scenario.status_text
    for word in {pid, *[p for p in name.split("^") if len(p) > 3]}:
        assert word not in logs, f"{word!r} appears in the node's logs"


def test_sigterm_stops_the_node_and_all_its_processes(scenario: Scenario) -> None:
    assert scenario.stop_rc == 0
    assert len(scenario.pids_at_stop) >= 3  # serve, Orthanc, worker were running
    assert "node stopped" in scenario.node.log_text()
    time.sleep(0.5)
    assert _children_pids(scenario.node) == []


def test_rest_api_needs_the_generated_credentials(scenario: Scenario) -> None:
    work = scenario.node.work
    for f in ("credentials.json", "orthanc/orthanc.json"):
        assert stat.S_IMODE((work / f).stat().st_mode) == 0o600
    cfg = json.loads((work / "orthanc" / "orthanc.json").read_text())
    assert cfg["RemoteAccessAllowed"] is False and cfg["HttpPort"] == scenario.node.http_port
    assert scenario.http_codes == {"none": 401, "wrong": 401, "generated": 200}


def test_destination_down_for_60_s_delays_results_without_loss(small_cohort: Path, tmp_path: Path) -> None:
    """Needs the DICOM writers too (something to send). The PACS is down from before the study is sent
    until 60 s later and at least until the node has failed to send; then results arrive, once."""
    study = study_variant(small_cohort / "case_0001" / "dicom", tmp_path / "study")
    pacs = TestPacs(tmp_path / "pacs").start()
    node = Node(tmp_path / "node", pacs.dest, fast_route_config(tmp_path / "route.json"))
    try:
        node.start()
        pacs.stop()
        down_at = time.monotonic()
        assert send_study(study, node.port).returncode == 0
        wait_for(lambda: (j := _job_for(node, study)) is not None and j.state in ("sending", "done", "failed"), PIPELINE_WAIT_S, "the pipeline")
        job = _job_for(node, study)
        if not node.outputs(job.id):
            pytest.fail("the pipeline wrote no DICOM result (*.dcm): nothing to send (are the SEG/SR/PDF writers wired into `nstage run`?)")
        wait_for(lambda: _job_for(node, study).send_failures >= 1, 60, "a failed send while the PACS is down")
        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
        assert _job_for(node, study).state == "sending"  # still waiting, nothing dropped
        pacs = TestPacs(tmp_path / "pacs", dicom_port=pacs.dicom_port).start()
        wait_for(lambda: _job_for(node, study).state in ("done", "failed"), 120, "delivery after the PACS returned")
        job = _job_for(node, study)
        assert job.state == "done" and job.send_failures >= 1
        held = pacs.instances_of_study(study_uid_of(study))
        assert sorted(i["SOPInstanceUID"] for i in held) == sorted(o.sop_instance_uid for o in node.outputs(job.id))
    finally:
        node.stop()
        pacs.stop()
