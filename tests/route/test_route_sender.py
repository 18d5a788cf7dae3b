"""C-STORE with storescu against dcmtk's storescp on loopback (a few seconds, no Orthanc needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nstage.route.sender import SendError, store_file
from nstage.route.settings import DicomPeer, free_port
from tests.route.route_fake_pipeline import PDF_SOP_CLASS, tiny_dicom

pytestmark = pytest.mark.skipif(not (shutil.which("storescu") and shutil.which("storescp")), reason="dcmtk (storescu, storescp) is not installed")
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"  # the SR class the pipeline writes; not in storescu's default proposals


@pytest.fixture()
def scp(tmp_path: Path):
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    proc = subprocess.Popen(["storescp", "-aet", "SCP", "-od", str(received), str(port)], env={**os.environ, "TCP_NODELAY": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield DicomPeer("SCP", "127.0.0.1", port), received, proc
    proc.terminate()
    proc.wait(10)


def test_store_file_delivers_sr_and_pdf_and_reports_a_dead_destination(scp, tmp_path: Path) -> None:
    dest, received, proc = scp
    files = []
    for sop, modality in ((COMPREHENSIVE_3D_SR, "SR"), (PDF_SOP_CLASS, "DOC")):
        f = tmp_path / f"{modality}.dcm"
        tiny_dicom(f, "1.2.3", sop, modality)
        store_file(f, dest, "NODE", 3, 10)
        files.append(f)
    assert len(list(received.iterdir())) == 2
    proc.terminate()
    proc.wait(10)
    with pytest.raises(SendError, match=r"C-STORE of SR.dcm to SCP@127.0.0.1:\d+ failed .*(refused|Association)"):
        store_file(files[0], dest, "NODE", 2, 5)


def test_store_file_reports_an_unknown_sop_class(scp, tmp_path: Path) -> None:
    dest, _, _ = scp
    f = tmp_path / "labelmap.dcm"
    tiny_dicom(f, "1.2.3", "1.2.840.10008.5.1.4.1.1.66.7", "SEG")  # LABELMAP SEG: unknown to dcmtk 3.6.7
    with pytest.raises(SendError, match="labelmap.dcm"):
        store_file(f, dest, "NODE", 3, 10)
