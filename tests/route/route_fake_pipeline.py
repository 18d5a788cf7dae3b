"""A stand-in for `nstage run` in the worker's unit tests: same arguments, controllable outcome.

python tests/route_fake_pipeline.py MODE COUNTER -i IN -o OUT -m MODELS --rules R
MODE: ok (result.json + two DICOM files), input-error (exit 2 with an `error:` line),
crash (exit 1, a traceback), sleep (ok after 30 s). COUNTER: a file that counts the runs.
Modes for runs at once, where COUNTER is a folder and each run leaves a file `<job folder>.<pid>` in it:
gated (ok once COUNTER/go-<job folder> exists, at most 60 s), timed-S (ok after S seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def tiny_dicom(path: Path, study_uid: str, sop_class: str, modality: str, patient_id: str = "FAKE") -> None:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    if modality == "DOC":
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    ds.save_as(path, enforce_file_format=True)


def main() -> int:
    mode, counter = sys.argv[1], Path(sys.argv[2])
    p = argparse.ArgumentParser()
    for flag in ("-i", "-o", "-m", "--rules"):
        p.add_argument(flag)
    args = p.parse_args(sys.argv[3:])
    job = Path(args.o).parent.name  # WORK/jobs/<job>/run.tmp
    if mode == "gated" or mode.startswith("timed-"):
        (counter / f"{job}.{os.getpid()}").write_text("")
        if mode == "gated":
            deadline = time.monotonic() + 60
            while not (counter / f"go-{job}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            time.sleep(float(mode.split("-", 1)[1]))
    else:
        counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    print("load study ...", file=sys.stderr, flush=True)
    if mode == "input-error":
        print("error: series 3 PatientWeight (0010,1030) is missing: add the weight", file=sys.stderr)
        return 2
    if mode == "crash":
        raise RuntimeError("simulated crash")
    if mode == "sleep":
        time.sleep(30)
    out = Path(args.o)
    out.mkdir(parents=True, exist_ok=True)
    first = next(q for q in sorted(Path(args.i).iterdir()) if q.suffix == ".dcm")
    study_uid = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    tiny_dicom(out / "findings_sr.dcm", study_uid, BASIC_TEXT_SR, "SR")
    tiny_dicom(out / "report_pdf.dcm", study_uid, PDF_SOP_CLASS, "DOC")
    (out / "result.json").write_text(json.dumps({"n_stage": {"tnm8": "N0", "tnm9": "N0"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
