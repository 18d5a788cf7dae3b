"""The routing node with several pipeline runs at once (`nstage route serve --workers 2`), real servers
on loopback (the node's Orthanc, a test PACS, storescu) and two warm pipeline worker processes
(`nstage.route.study_server`) whose study function is a stand-in that takes a few seconds
(tests/route/route_fake_pipeline.py `warm_study` in mode `timed-S`, writing two DICOM results per study).

Three studies are sent back to back; once two runs go on at once the node is killed with SIGKILL (serve,
worker, Orthanc, the warm processes and their runs all die) and started again on the same work folder.
Every study's results arrive at the PACS exactly once, and each warm process warmed up once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.route.route_harness import (
    Node,
    TestPacs,
    fast_route_config,
    needs_orthanc,
    processes_of,
    send_study,
    study_uid_of,
    study_variant,
    wait_for,
)

pytestmark = [pytest.mark.slow, needs_orthanc()]

RUN_S = 12  # one stand-in pipeline run


def test_three_studies_with_two_workers_and_a_kill_9_arrive_once_each(small_cohort: Path, tmp_path: Path, monkeypatch) -> None:
    src = small_cohort / "case_0000" / "dicom"
    studies = [study_variant(src, tmp_path / "studies" / f"s{k}", keep_modalities=("CT", "PT")) for k in range(3)]
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("FAKE_MODE", f"timed-{RUN_S}")  # inherited by serve, its worker and the warm processes
    monkeypatch.setenv("FAKE_DIR", str(runs))
    server = ["{python}", "-m", "nstage.route.study_server", "--models", "{models}", "--rules", "{rules}",
              "--study", "tests.route.route_fake_pipeline:warm_study", "--warm-up", "tests.route.route_fake_pipeline:warm_up"]
    config = fast_route_config(tmp_path / "route.json", pipeline={"mode": "warm", "warm_command": server})
    pacs = TestPacs(tmp_path / "pacs").start()
    node = Node(tmp_path / "node", pacs.dest, config, extra_args=("--workers", "2"))
    try:
        node.start()
        for s in studies:
            assert send_study(s, node.port).returncode == 0
        wait_for(lambda: "(2 of 2 runs at once)" in node.log_text(), 120, "two pipeline runs at once")
        running = [j.id for j in node.jobs() if j.state == "running"]
        assert len(running) == 2
        node.kill()
        wait_for(lambda: not processes_of(node.work), 30, "every process of the node to die with it")
        node.start()
        uids = [study_uid_of(s) for s in studies]
        wait_for(lambda: sorted(j.state for j in node.jobs()) == ["done"] * 3, 240, "every study to be done after the restart")
        jobs = {j.study_uid: j for j in node.jobs()}
        assert sorted(jobs) == sorted(uids)  # one job per study
        for uid in uids:
            held = pacs.instances_of_study(uid)
            recorded = node.outputs(jobs[uid].id)
            assert sorted(i["Modality"] for i in held) == ["DOC", "SR"]
            assert sorted(i["SOPInstanceUID"] for i in held) == sorted(o.sop_instance_uid for o in recorded)  # once each
        assert all(jobs[u].attempts == 2 for u in uids if jobs[u].id in running)  # the killed runs ran again
        log = node.log_text()
        assert log.count("pipeline attempt") == 3 + len(running)
        assert "(2 of 2 runs at once)" in log.split("worker started (node")[-1]  # again two at once after the restart
        warmed = {int(p.name.split("-", 1)[1]) for p in runs.glob("warm-*")}
        ran = [int(p.suffix[1:]) for p in runs.glob("0*.*")]
        assert len(warmed) == 4 and len(ran) == 3 + len(running)  # two warm processes per start of the node, each loaded once
        assert set(ran) <= warmed
    finally:
        node.stop()
        pacs.stop()
    assert sys.platform != "linux" or not processes_of(node.work)
