"""A study that had arrived but was not yet stable when the node was killed (SIGKILL) is processed
after the restart. Orthanc keeps its stable-age timers in memory, so it never raises StableStudy for
such a study again; the worker looks for studies it has no job for (real servers on loopback, the
stand-in pipeline of tests/route/route_fake_pipeline.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.route.route_harness import (
    Node,
    TestPacs,
    fast_route_config,
    needs_orthanc,
    send_study,
    study_uid_of,
    study_variant,
    wait_for,
)

pytestmark = [pytest.mark.slow, needs_orthanc()]

FAKE = Path(__file__).with_name("route_fake_pipeline.py")
STABLE_AGE_S = 5  # long enough that the kill, right after the send, comes before the study is stable


def test_a_study_not_yet_stable_at_a_kill_9_is_processed_after_the_restart(small_cohort: Path, tmp_path: Path) -> None:
    study = study_variant(small_cohort / "case_0000" / "dicom", tmp_path / "study", keep_modalities=("CT", "PT"))
    counter = tmp_path / "runs.txt"
    command = ["{python}", str(FAKE), "ok", str(counter), "-i", "{input}", "-o", "{output}", "-m", "{models}", "--rules", "{rules}"]
    config = fast_route_config(tmp_path / "route.json", stable_age_s=STABLE_AGE_S, pipeline={"mode": "command", "command": command})
    pacs = TestPacs(tmp_path / "pacs").start()
    node = Node(tmp_path / "node", pacs.dest, config)
    try:
        node.start()
        assert send_study(study, node.port).returncode == 0
        assert node.jobs() == []  # not yet stable
        node.kill()
        assert node.jobs() == []
        node.start()
        wait_for(lambda: [j.state for j in node.jobs()] == ["done"], 120, "the study to be done after the restart")
        (job,) = node.jobs()
        assert job.study_uid == study_uid_of(study)
        assert sorted(i["Modality"] for i in pacs.instances_of_study(job.study_uid)) == ["DOC", "SR"]
        assert counter.read_text() == "1"
        log = node.log_text().split("worker started")[-1]
        assert "in Orthanc but unknown to the queue" in log and "start-up scan: 1 stable study in Orthanc without a job" in log
        node.stop()
        node.start()  # a later restart finds the study known: no second run
        wait_for(lambda: "start-up scan" in node.log_text().split("worker started")[-1], 60, "the start-up scan of the second restart")
        assert "start-up scan: 0 stable studies in Orthanc without a job" in node.log_text().split("worker started")[-1]
        assert [j.state for j in node.jobs()] == ["done"] and counter.read_text() == "1"
    finally:
        node.stop()
        pacs.stop()
