"""The node's persistent job queue (SQLite in the work folder) and its state machine.

    queued --start_run--> running --run_succeeded--> sending --finish--> done
       ^                     |  \\--run_failed(permanent or attempts spent)--> failed
       |                     \\--run_failed(transient) / interrupted--> queued (not before a backoff)
    queued --supersede--> superseded (a newer version of the same study arrived before it ran)
    sending --send_failed--> sending (not before a backoff) | failed (destination gone too long)
    ignored: recorded at intake (not a PET/CT study)

Every transition is one transaction that checks the state it leaves, so a crash between two
transitions leaves the job in one of the states above. Output files are recorded (with their SOP
Instance UIDs) in the same transaction that enters `sending`; each is marked sent on its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nstage.route.backoff import Backoff

QUEUED, RUNNING, SENDING, DONE, FAILED, IGNORED, SUPERSEDED = "queued", "running", "sending", "done", "failed", "ignored", "superseded"
ACTIVE = (QUEUED, RUNNING, SENDING)
TERMINAL = (DONE, FAILED, IGNORED, SUPERSEDED)
STATES = ACTIVE + TERMINAL

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  study_key TEXT NOT NULL,
  study_uid TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  state TEXT NOT NULL,
  n_instances INTEGER NOT NULL DEFAULT 0,
  modalities TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  send_failures INTEGER NOT NULL DEFAULT 0,
  not_before REAL NOT NULL DEFAULT 0,
  first_send_failure_at REAL,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  started_at REAL,
  finished_at REAL,
  error TEXT,
  instances_digest TEXT NOT NULL DEFAULT '',
  UNIQUE (study_key, fingerprint)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, not_before);
CREATE TABLE IF NOT EXISTS outputs (
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  name TEXT NOT NULL,
  sop_instance_uid TEXT NOT NULL,
  sop_class_uid TEXT NOT NULL,
  modality TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  sent_at REAL,
  PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class InvalidTransition(Exception):
    """A transition asked of a job that is not in the state it leaves (a bug, or a second worker)."""


@dataclass(frozen=True)
class Job:
    id: int
    study_key: str
    study_uid: str
    fingerprint: str
    state: str
    n_instances: int
    modalities: str
    attempts: int
    send_failures: int
    not_before: float
    first_send_failure_at: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    instances_digest: str = ""  # which Orthanc instances the version held (fingerprint.instances_digest); '' before it was kept


@dataclass(frozen=True)
class OutputFile:
    """One DICOM result file of a job, as recorded before sending."""

    name: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    sha256: str
    sent_at: float | None = None


class JobQueue:
    """All reads and transitions of the queue. One instance per process (SQLite WAL, busy timeout)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._migrate()
        self.db.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """Columns added since a queue file was created (its jobs keep the column's default)."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if "instances_digest" not in have:
            self.db.execute("ALTER TABLE jobs ADD COLUMN instances_digest TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- reads -------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        return Job(**dict(row))

    def find(self, study_key: str, fingerprint: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE study_key = ? AND fingerprint = ?", (study_key, fingerprint)).fetchone()
        return Job(**dict(row)) if row else None

    def jobs(self, states: Iterable[str] | None = None) -> list[Job]:
        if states is None:
            rows = self.db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        else:
            st = list(states)
            rows = self.db.execute(f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(st))}) ORDER BY id", st).fetchall()
        return [Job(**dict(r)) for r in rows]

    def jobs_of_study(self, study_key: str) -> list[Job]:
        """Every job recorded for one study (all its versions), oldest first."""
        rows = self.db.execute("SELECT * FROM jobs WHERE study_key = ? ORDER BY id", (study_key,)).fetchall()
        return [Job(**dict(r)) for r in rows]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            out[state] = n
        return out

    def next_due(self, now: float, states: tuple[str, ...] = ACTIVE, exclude: Iterable[int] = ()) -> Job | None:
        """The job in `states` to work on now: oldest due first, leaving out the ids in `exclude` (runs in progress).

        With the default states, running jobs only come back after a crash (a worker runs them in the background).
        """
        skip = list(exclude)
        row = self.db.execute(f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))}) AND not_before <= ? "
                              + (f"AND id NOT IN ({','.join('?' * len(skip))}) " if skip else "")
                              + "ORDER BY not_before, id LIMIT 1", (*states, now, *skip)).fetchone()
        return Job(**dict(row)) if row else None

    def next_wakeup(self) -> float | None:
        row = self.db.execute(f"SELECT MIN(not_before) FROM jobs WHERE state IN ({','.join('?' * len(ACTIVE))})", ACTIVE).fetchone()
        return row[0]

    def outputs(self, job_id: int) -> list[OutputFile]:
        rows = self.db.execute("SELECT name, sop_instance_uid, sop_class_uid, modality, sha256, sent_at FROM outputs WHERE job_id = ? ORDER BY name",
                               (job_id,)).fetchall()
        return [OutputFile(**dict(r)) for r in rows]

    def unsent(self, job_id: int) -> list[OutputFile]:
        return [o for o in self.outputs(job_id) if o.sent_at is None]

    # --- the change cursor (last Orthanc /changes seq handled) ---------------------------------
    def cursor(self, name: str = "orthanc_changes") -> int:
        row = self.db.execute("SELECT value FROM cursor WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, value: int, name: str = "orthanc_changes") -> None:
        with self._tx() as db:
            db.execute("INSERT INTO cursor (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, int(value)))

    # --- transitions -------------------------------------------------------------------------
    def add(self, study_key: str, study_uid: str, fingerprint: str, n_instances: int, modalities: str, now: float | None = None,
            state: str = QUEUED, error: str | None = None, instances_digest: str = "") -> tuple[Job, bool]:
        """Record a study version; (job, True) when new, (the existing job, False) when already known."""
        if state not in (QUEUED, IGNORED, FAILED):
            raise InvalidTransition(f"a job cannot start in state {state}")
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO jobs (study_key, study_uid, fingerprint, state, n_instances, modalities, created_at, updated_at, "
                             "finished_at, error, instances_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (study_key, study_uid, fingerprint, state, n_instances, modalities, now, now, None if state == QUEUED else now, error,
                              instances_digest))
            created = cur.rowcount == 1
        job = self.find(study_key, fingerprint)
        assert job is not None
        return job, created

    def _move(self, db: sqlite3.Connection, job_id: int, leaving: tuple[str, ...], sets: str, args: tuple) -> None:
        cur = db.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND state IN ({','.join('?' * len(leaving))})", (*args, job_id, *leaving))
        if cur.rowcount != 1:
            state = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            raise InvalidTransition(f"job {job_id} is {state[0] if state else 'missing'}, not {' or '.join(leaving)}")

    def supersede_queued(self, study_key: str, newer_id: int, now: float | None = None) -> list[int]:
        """Older queued versions of a study that has a newer version: superseded (they never ran)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE study_key = ? AND state = ? AND id < ?", (study_key, QUEUED, newer_id))]
            for i in ids:
                self._move(db, i, (QUEUED,), "state = ?, updated_at = ?, finished_at = ?, error = ?", (SUPERSEDED, now, now, f"superseded by job {newer_id}"))
        return ids

    def start_run(self, job_id: int, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        with self._tx() as db:
            self._move(db, job_id, (QUEUED,), "state = ?, attempts = attempts + 1, started_at = ?, updated_at = ?, error = NULL", (RUNNING, now, now))
        return self.get(job_id)

    def run_succeeded(self, job_id: int, outputs: Iterable[OutputFile], now: float | None = None) -> Job:
        """running -> sending, with the persisted output files recorded (idempotent per file name)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            self._move(db, job_id, (RUNNING, QUEUED), "state = ?, updated_at = ?, not_before = 0, error = NULL", (SENDING, now))
            db.executemany("INSERT OR IGNORE INTO outputs (job_id, name, sop_instance_uid, sop_class_uid, modality, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                           [(job_id, o.name, o.sop_instance_uid, o.sop_class_uid, o.modality, o.sha256) for o in outputs])
        return self.get(job_id)

    def run_failed(self, job_id: int, error: str, permanent: bool, backoff: Backoff, max_attempts: int, now: float | None = None) -> Job:
        """A failed pipeline run: `failed` when permanent (bad input) or out of attempts, else queued after a backoff."""
        now = time.time() if now is None else now
        job = self.get(job_id)
        with self._tx() as db:
            if permanent or job.attempts >= max_attempts:
                msg = error if permanent else f"{error} (gave up after {job.attempts} attempt(s))"
                self._move(db, job_id, (RUNNING,), "state = ?, updated_at = ?, finished_at = ?, error = ?", (FAILED, now, now, msg))
            else:
                self._move(db, job_id, (RUNNING,), "state = ?, updated_at = ?, not_before = ?, error = ?",
                           (QUEUED, now, now + backoff.delay(job.attempts), error))
        return self.get(job_id)

    def interrupted(self, job_id: int, count_attempt: bool, now: float | None = None) -> Job:
        """running -> queued: the worker stopped (SIGTERM: the attempt is not counted) or died (it is)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            self._move(db, job_id, (RUNNING,), "state = ?, updated_at = ?, not_before = 0" + ("" if count_attempt else ", attempts = MAX(attempts - 1, 0)"),
                       (QUEUED, now))
        return self.get(job_id)

    def give_up(self, job_id: int, error: str, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        with self._tx() as db:
            self._move(db, job_id, ACTIVE, "state = ?, updated_at = ?, finished_at = ?, error = ?", (FAILED, now, now, error))
        return self.get(job_id)

    def mark_sent(self, job_id: int, name: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute("UPDATE outputs SET sent_at = ? WHERE job_id = ? AND name = ? AND sent_at IS NULL", (now, job_id, name))
            if cur.rowcount != 1:
                raise InvalidTransition(f"output {name} of job {job_id} is unknown or already sent")

    def send_failed(self, job_id: int, error: str, backoff: Backoff, give_up_after_s: float, now: float | None = None) -> Job:
        """A failed C-STORE: retry after a growing delay; `failed` once the destination has failed for give_up_after_s."""
        now = time.time() if now is None else now
        job = self.get(job_id)
        first = job.first_send_failure_at if job.first_send_failure_at is not None else now
        failures = job.send_failures + 1
        with self._tx() as db:
            if now - first >= give_up_after_s:
                self._move(db, job_id, (SENDING,), "state = ?, send_failures = ?, updated_at = ?, finished_at = ?, error = ?",
                           (FAILED, failures, now, now, f"{error} (destination failing for {now - first:.0f} s, gave up)"))
            else:
                self._move(db, job_id, (SENDING,), "send_failures = ?, first_send_failure_at = ?, not_before = ?, updated_at = ?, error = ?",
                           (failures, first, now + backoff.delay(failures), now, error))
        return self.get(job_id)

    def finish(self, job_id: int, now: float | None = None) -> Job:
        """sending -> done; refused while an output is unsent."""
        now = time.time() if now is None else now
        with self._tx() as db:
            left = db.execute("SELECT COUNT(*) FROM outputs WHERE job_id = ? AND sent_at IS NULL", (job_id,)).fetchone()[0]
            if left:
                raise InvalidTransition(f"job {job_id} still has {left} unsent output(s)")
            self._move(db, job_id, (SENDING,), "state = ?, updated_at = ?, finished_at = ?, not_before = 0, error = NULL, "
                       "first_send_failure_at = NULL", (DONE, now, now))
        return self.get(job_id)

    def retry(self, job_id: int, now: float | None = None) -> Job:
        """An operator's retry of a failed job: back to queued with fresh attempts (outputs already recorded: sending)."""
        now = time.time() if now is None else now
        has_outputs = bool(self.outputs(job_id))
        with self._tx() as db:
            self._move(db, job_id, (FAILED,), "state = ?, attempts = 0, send_failures = 0, first_send_failure_at = NULL, not_before = 0, "
                       "updated_at = ?, finished_at = NULL, error = NULL", (SENDING if has_outputs else QUEUED, now))
        return self.get(job_id)
