"""What a batch keeps about each study between runs (OUT_ROOT/.nstage_batch/), and when a study needs work.

A study is finished when OUT_ROOT/<study>/result.json exists: `nstage run` moves its outputs into
place all at once, so a study interrupted mid-way (worker killed, machine down) has no output
folder, only a hidden staging folder, which the next run removes before redoing the study. A study
that failed on bad input is not run again while its input is unchanged (its record keeps the
`error:` line); a changed input, or `--retry-failed`, runs it again. A study that ended otherwise
(a crash, a worker lost every time) is run again by the next batch.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from nstage.batch.studies import BatchStudy, input_fingerprint
from nstage.errors import InputError

STATE_DIR = ".nstage_batch"
RESULT = "result.json"
OK, INPUT_ERROR, CRASHED = "ok", "input_error", "crashed"  # how a study's last run ended


@dataclass(frozen=True)
class StudyRecord:
    """The end of one study's last run in a batch."""

    study: str
    status: str  # ok | input_error | crashed
    error: str = ""
    seconds: float | None = None
    fingerprint: str = ""
    finished_at: str = ""


def output_dir(out_root: Path, study: BatchStudy) -> Path:
    return Path(out_root) / study.name


def record_path(out_root: Path, name: str) -> Path:
    return Path(out_root) / STATE_DIR / f"{name}.json"


def read_record(out_root: Path, name: str) -> StudyRecord | None:
    try:
        return StudyRecord(**json.loads(record_path(out_root, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(out_root: Path, record: StudyRecord) -> None:
    """Write a record atomically (a rename)."""
    path = record_path(out_root, record.study)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)


def is_finished(out_root: Path, study: BatchStudy) -> bool:
    return (output_dir(out_root, study) / RESULT).is_file()


def needs_run(out_root: Path, study: BatchStudy, retry_failed: bool = False) -> bool:
    """False for a finished study and for one that failed on bad input that has not changed since."""
    if is_finished(out_root, study):
        return False
    rec = read_record(out_root, study.name)
    if rec is None or rec.status != INPUT_ERROR or retry_failed:
        return True
    return rec.fingerprint != input_fingerprint(study)


def remove_stale_staging(out_root: Path, studies: list[BatchStudy]) -> int:
    """Remove the staging folders runs left behind when they were killed (`.<study>.*` beside the outputs); returns how many."""
    names = {s.name for s in studies}
    removed = 0
    for p in Path(out_root).glob(".*"):
        if p.is_dir() and p.name != STATE_DIR and p.name[1:].rsplit(".", 1)[0] in names:
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def batch_lock(out_root: Path) -> Iterator[None]:
    """One batch at a time per output root (an flock on OUT_ROOT/.nstage_batch/lock)."""
    state = Path(out_root) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another `nstage batch` is writing into {out_root}; wait for it or choose another -o") from None
        yield
    finally:
        os.close(fd)
