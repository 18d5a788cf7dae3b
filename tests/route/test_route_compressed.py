"""A study routed compressed, as PACS forward it: storescu proposes JPEG Lossless (SV1) and sends the
study in it; the node's Orthanc keeps it compressed, the pipeline decodes it, and the PACS gets the
SEG, SR and PDF back (real Orthanc servers on loopback, the real pipeline)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom
import pytest

from nstage.route.layout import INSTANCES_FILE, input_dir
from tests.encodings import ENCODINGS, reencode_study
from tests.route.route_harness import (
    NODE_AET,
    PACS_AET,
    Node,
    TestPacs,
    fast_route_config,
    needs_orthanc,
    study_uid_of,
    study_variant,
    wait_for,
)

pytestmark = [pytest.mark.slow, needs_orthanc()]

PIPELINE_WAIT_S = 400  # a small study takes about 30-60 s through the pipeline on a shared 2-core machine
JPEG_LOSSLESS_SV1 = ENCODINGS["jpeg-lossless-sv1"].transfer_syntax


def test_study_sent_as_jpeg_lossless_comes_back_as_seg_sr_and_pdf(small_cohort: Path, tmp_path: Path) -> None:
    plain = study_variant(small_cohort / "case_0000" / "dicom", tmp_path / "plain")
    study = reencode_study(plain, tmp_path / "jpeg", "jpeg-lossless-sv1")
    uid = study_uid_of(study)
    pacs = TestPacs(tmp_path / "pacs").start()
    node = Node(tmp_path / "node", pacs.dest, fast_route_config(tmp_path / "route.json", keep_input_after_done=True))
    try:
        node.start()
        cmd = ["storescu", "-xs", "-aet", PACS_AET, "-aec", NODE_AET, "+sd", "+r", "127.0.0.1", str(node.port), str(study)]
        sent = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=120)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        job = wait_for(lambda: next((j for j in node.jobs() if j.study_uid == uid and j.state in ("done", "failed")), None),
                       PIPELINE_WAIT_S, "the routed study to end done or failed")
        assert job.state == "done", job.error
        given = [p for p in input_dir(node.work, job.study_key, job.fingerprint).rglob("*") if p.is_file() and p.name != INSTANCES_FILE]
        syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in given}
        assert len(given) == len(list(study.rglob("*.dcm"))) and syntaxes == {JPEG_LOSSLESS_SV1}, syntaxes  # read as routed
        wait_for(lambda: len(pacs.instances_of_study(uid)) >= 3, 120, "the results in the PACS")
        assert sorted(i["Modality"] for i in pacs.instances_of_study(uid)) == ["DOC", "SEG", "SR"]
    finally:
        node.stop()
        pacs.stop()
