"""SQLite job store: every accepted job is written here before the user is told it is queued.

After a crash or SIGKILL the bot reads the unfinished jobs back at start and resumes them, so no
accepted photo is lost. Only Telegram file ids and message ids are stored, never image bytes.
Finished jobs are kept for a while (then pruned) so that an update Telegram delivers twice
(it was fetched but not yet confirmed when the bot died) is recognised and not processed again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from .jobs import Job, JobItem
from .modes import (
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    source_message_id INTEGER NOT NULL,
    lang TEXT NOT NULL,
    mode TEXT NOT NULL,
    compare INTEGER NOT NULL,
    items TEXT NOT NULL,
    vividness TEXT NOT NULL DEFAULT 'default',
    repair_strength TEXT NOT NULL DEFAULT 'full',
    sr_input TEXT NOT NULL DEFAULT 'clean',
    done INTEGER NOT NULL DEFAULT 0,
    status_message_id INTEGER,
    state TEXT NOT NULL DEFAULT 'queued',
    outcome TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (chat_id, source_message_id)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
"""
# Columns added after the first release: a store written by an older bot gets them at start, and its
# jobs load with the default value.
ADDED_COLUMNS = {
    "vividness": f"TEXT NOT NULL DEFAULT '{DEFAULT_VIVIDNESS.value}'",
    "repair_strength": f"TEXT NOT NULL DEFAULT '{DEFAULT_REPAIR_STRENGTH.value}'",
    "sr_input": f"TEXT NOT NULL DEFAULT '{DEFAULT_SR_INPUT.value}'",
}

QUEUED = "queued"
FINISHED = "finished"
CANCELLED = "cancelled"


class JobStore:
    """Accepted jobs on disk. Calls are small single-row writes, fast enough for the event loop."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; WAL keeps each committed write safe when the process is killed.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in ADDED_COLUMNS.items():
            if name in present:
                continue
            try:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
            except sqlite3.OperationalError as exc:  # another replica of the pod added it meanwhile
                if "duplicate column" not in str(exc).lower():
                    raise

    def close(self) -> None:
        self._db.close()

    def add(self, job: Job) -> bool:
        """Persist a new job and set ``job.id``; ``False`` when its message was already accepted."""
        now = time.time()
        items = json.dumps([item.to_dict() for item in job.items])
        cur = self._db.execute(
            "INSERT OR IGNORE INTO jobs (user_id, chat_id, source_message_id, lang, mode, compare, items, vividness,"
            " repair_strength, sr_input, done, status_message_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.user_id, job.chat_id, job.source_message_id, job.lang, job.mode.value, int(job.compare), items,
             job.vividness.value, job.repair_strength.value, job.sr_input.value, job.done, job.status_message_id,
             job.created_at, now),
        )
        if cur.rowcount == 0:
            return False
        job.id = cur.lastrowid
        return True

    def set_status_message(self, job_id: int, message_id: int | None) -> None:
        self._db.execute("UPDATE jobs SET status_message_id = ?, updated_at = ? WHERE id = ?",
                         (message_id, time.time(), job_id))

    def advance(self, job_id: int, done: int) -> None:
        """Record that the first ``done`` images of the job have been answered."""
        self._db.execute("UPDATE jobs SET done = ?, updated_at = ? WHERE id = ?", (done, time.time(), job_id))

    def finish(self, job_id: int, outcome: str, state: str = FINISHED) -> None:
        self._db.execute("UPDATE jobs SET state = ?, outcome = ?, updated_at = ? WHERE id = ?",
                         (state, outcome, time.time(), job_id))

    def unfinished(self) -> list[Job]:
        """Jobs accepted but not finished, oldest first (to resume at start)."""
        rows = self._db.execute(
            "SELECT id, user_id, chat_id, source_message_id, lang, mode, compare, items, vividness, repair_strength,"
            " sr_input, done, status_message_id, created_at FROM jobs WHERE state = ? ORDER BY id", (QUEUED,),
        ).fetchall()
        jobs = []
        for (job_id, user_id, chat_id, source_message_id, lang, mode, compare, items, vividness, strength, sr_input,
             done, status_id, created_at) in rows:
            jobs.append(Job(
                user_id=user_id, chat_id=chat_id, source_message_id=source_message_id, lang=lang, mode=Mode(mode),
                compare=bool(compare), items=[JobItem.from_dict(d) for d in json.loads(items)],
                vividness=Vividness.parse(vividness), repair_strength=RepairStrength.parse(strength),
                sr_input=SrInput.parse(sr_input), id=job_id, done=done, status_message_id=status_id, created_at=created_at, resumed=True,
            ))
        return jobs

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (for tests and the start-up log)."""
        return dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def prune(self, older_than_s: float = 2 * 86400) -> int:
        """Forget finished and cancelled jobs older than ``older_than_s``."""
        cur = self._db.execute("DELETE FROM jobs WHERE state != ? AND updated_at < ?",
                               (QUEUED, time.time() - older_than_s))
        return cur.rowcount
