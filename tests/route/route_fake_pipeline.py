"""A stand-in for `nstage run` in the worker's unit tests: same arguments, controllable outcome.

The same behaviours as the functions of a warm worker process (`python -m nstage.route.study_server
--study tests.route.route_fake_pipeline:warm_study --warm-up tests.route.route_fake_pipeline:warm_up`):
the mode and folder come from the environment (FAKE_MODE, FAKE_DIR; a file FAKE_DIR/mode-<job> sets
one job's mode), the warm-up leaves a file
`warm-<pid>` in FAKE_DIR and each run a file `<job folder>.<pid>` (modes as above; crash raises).

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


def write_results(inp: Path, out: Path) -> None:
    """Two DICOM results of the study in `inp` and a result.json, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    first = next(q for q in sorted(Path(inp).iterdir()) if q.suffix == ".dcm")
    study_uid = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    tiny_dicom(out / "findings_sr.dcm", study_uid, BASIC_TEXT_SR, "SR")
    tiny_dicom(out / "report_pdf.dcm", study_uid, PDF_SOP_CLASS, "DOC")
    (out / "result.json").write_text(json.dumps({"n_stage": {"tnm8": "N0", "tnm9": "N0"}}))


def wait_in(mode: str, folder: Path, job: str) -> None:
    """`gated` (until folder/go-<job> exists, at most 60 s) or `timed-S`; a file <job>.<pid> records the run."""
    (folder / f"{job}.{os.getpid()}").write_text("")
    if mode == "gated":
        deadline = time.monotonic() + 60
        while not (folder / f"go-{job}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    elif mode.startswith("timed-"):
        time.sleep(float(mode.split("-", 1)[1]))


def warm_up(models: Path, rules: str) -> None:
    """A warm worker's start: one file per process (the test counts the loads)."""
    torch = sys.modules.get("torch")  # imported by the server only for --torch-threads
    threads = torch.get_num_threads() if torch is not None else "default"
    (Path(os.environ["FAKE_DIR"]) / f"warm-{os.getpid()}").write_text(f"{models} {rules} torch-threads={threads}")


def warm_study(inp: Path, out: Path, models: Path, rules: str) -> None:
    """One study in a warm worker, as FAKE_DIR/mode-<job> or FAKE_MODE says: ok | gated | timed-S | input-error | crash."""
    from nstage.errors import InputError

    folder, job = Path(os.environ["FAKE_DIR"]), out.parent.name
    per_job = folder / f"mode-{job}"  # a job's own mode, else FAKE_MODE
    mode = per_job.read_text() if per_job.exists() else os.environ["FAKE_MODE"]
    wait_in(mode if mode == "gated" or mode.startswith("timed-") else "ok", folder, job)
    if mode == "input-error":
        raise InputError("series 3 PatientWeight (0010,1030) is missing: add the weight")
    if mode == "crash":
        raise RuntimeError("simulated crash")
    write_results(inp, out)


def main() -> int:
    mode, counter = sys.argv[1], Path(sys.argv[2])
    p = argparse.ArgumentParser()
    for flag in ("-i", "-o", "-m", "--rules"):
        p.add_argument(flag)
    args = p.parse_args(sys.argv[3:])
    job = Path(args.o).parent.name  # WORK/jobs/<job>/run.tmp
    if mode == "gated" or mode.startswith("timed-"):
        wait_in(mode, counter, job)
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
    write_results(Path(args.i), Path(args.o))
    return 0


if __name__ == "__main__":
    sys.exit(main())
