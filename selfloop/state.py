"""The state store: one SQLite database (WAL mode) in the state dir.

It holds everything the daemon must remember across restarts: source files and
their status, documents, candidates and their verdicts, preference pairs,
generations, cycles and their phases, training metrics, and an event log.

Why SQLite in WAL mode: writers are transactional and crash-safe, and readers
(`selfloop status`, the dashboard in another terminal) never block the daemon.
Readers open the file read-only.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[i]`` moves a
database from version i to i+1, each inside one transaction. Domain queries live
next to their domain (corpus, registry, rework); this module owns the schema,
connections, transactions and the event log.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from selfloop.errors import AlreadyRunning, SelfloopError

MIGRATIONS: list[str] = [
    # 0 -> 1: the initial schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    -- One row per source file under orig/ or rework/ (path relative to the corpus root).
    CREATE TABLE files (
        path        TEXT PRIMARY KEY,
        origin      TEXT NOT NULL CHECK (origin IN ('orig', 'rework')),
        size        INTEGER,
        mtime_ns    INTEGER,
        sha256      TEXT,
        status      TEXT NOT NULL CHECK (status IN ('ingested', 'quarantined', 'removed')),
        reason      TEXT,
        n_docs      INTEGER NOT NULL DEFAULT 0,
        n_dropped   INTEGER NOT NULL DEFAULT 0,
        updated_at  REAL NOT NULL
    );

    -- Units of training data. Dropped and duplicate documents are kept for inspection.
    CREATE TABLE documents (
        id          INTEGER PRIMARY KEY,
        file_path   TEXT NOT NULL,
        locator     TEXT NOT NULL,          -- "line 12", "chunk 3", ...
        origin      TEXT NOT NULL,          -- orig | rework
        kind        TEXT NOT NULL,          -- text | chat | task
        format      TEXT NOT NULL,          -- txt | md | py | jsonl
        hash        TEXT NOT NULL,          -- sha256 of the normalized content
        content     TEXT NOT NULL,          -- normalized text, or JSON for chat/task records
        n_chars     INTEGER NOT NULL,
        split       TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
        status      TEXT NOT NULL CHECK (status IN ('active', 'dropped', 'duplicate', 'removed')),
        reason      TEXT,
        minhash     BLOB,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX documents_file ON documents (file_path);
    CREATE INDEX documents_hash ON documents (hash, status);
    CREATE INDEX documents_status ON documents (status, origin, split);

    CREATE TABLE cycles (
        id          INTEGER PRIMARY KEY,
        started_at  REAL NOT NULL,
        finished_at REAL,
        phase       TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
        generation  INTEGER,                -- the challenger this cycle trains
        error       TEXT,
        detail      TEXT NOT NULL DEFAULT '{}'
    );

    CREATE TABLE candidates (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER,
        generation  INTEGER,                -- the model generation that wrote it
        strategy    TEXT NOT NULL,          -- rewrite | synthesize | solve | ...
        kind        TEXT NOT NULL,          -- text | chat | python | task
        source_ids  TEXT NOT NULL DEFAULT '[]',
        content     TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
        reason      TEXT,
        scores      TEXT NOT NULL DEFAULT '{}',
        rework_path TEXT,
        created_at  REAL NOT NULL
    );
    CREATE INDEX candidates_cycle ON candidates (cycle_id, status);
    CREATE INDEX candidates_reason ON candidates (status, reason);

    CREATE TABLE verdicts (
        id           INTEGER PRIMARY KEY,
        candidate_id INTEGER NOT NULL REFERENCES candidates (id),
        judge        TEXT NOT NULL,
        status       TEXT NOT NULL,
        score        REAL,
        reason       TEXT,
        detail       TEXT NOT NULL DEFAULT '{}',
        created_at   REAL NOT NULL
    );
    CREATE INDEX verdicts_candidate ON verdicts (candidate_id);

    -- Chosen / rejected pairs for preference training.
    CREATE TABLE pairs (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER,
        prompt      TEXT NOT NULL,
        chosen      TEXT NOT NULL,
        rejected    TEXT NOT NULL,
        source      TEXT NOT NULL,          -- a_vs_b | task
        created_at  REAL NOT NULL
    );

    CREATE TABLE generations (
        id          INTEGER PRIMARY KEY,    -- generation number
        parent      INTEGER,
        path        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('training', 'candidate', 'promoted', 'rejected', 'pruned', 'failed')),
        metrics     TEXT NOT NULL DEFAULT '{}',
        gate        TEXT NOT NULL DEFAULT '{}',
        recipe      TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        decided_at  REAL
    );

    CREATE TABLE train_metrics (
        id          INTEGER PRIMARY KEY,
        generation  INTEGER NOT NULL,
        step        INTEGER NOT NULL,
        kind        TEXT NOT NULL,          -- train | eval
        loss        REAL,
        lr          REAL,
        tokens_per_s REAL,
        eta_s       REAL,
        ts          REAL NOT NULL
    );
    CREATE INDEX train_metrics_gen ON train_metrics (generation, step);

    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        ts          REAL NOT NULL,
        kind        TEXT NOT NULL,
        message     TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_kind ON events (kind, id);
    """,
    # 1 -> 2: a duplicate document points at the document it duplicates, so that
    # removing that document can bring the duplicate back instead of losing the text.
    """
    ALTER TABLE documents ADD COLUMN dup_of INTEGER;
    CREATE INDEX documents_dup_of ON documents (dup_of) WHERE dup_of IS NOT NULL;
    """,
    # 2 -> 3: a candidate keeps what the model saw and wrote, and the original it
    # competes with, so judging can resume after a crash and A-vs-B pairs can be stored.
    """
    ALTER TABLE candidates ADD COLUMN prompt TEXT;
    ALTER TABLE candidates ADD COLUMN completion TEXT;
    ALTER TABLE candidates ADD COLUMN original TEXT;
    """,
    # 3 -> 4: what a solve candidate answers (its task record, answer mode, decoded
    # answer, whether it was a hinted retry), so the task judge can check it.
    """
    ALTER TABLE candidates ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
    """,
    # 4 -> 5: recipe search ([train.search]): every recipe a cycle trained, its figures,
    # and which one the cycle chose; kept after its generation is pruned.
    """
    CREATE TABLE recipes (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER NOT NULL,
        generation  INTEGER NOT NULL,       -- the challenger generation of the cycle
        idx         INTEGER NOT NULL,       -- 0 = the incumbent recipe, 1.. = proposals
        params      TEXT NOT NULL,          -- the searched values (learning_rate, max_steps, ...)
        figures     TEXT NOT NULL DEFAULT '{}',  -- held-out loss, pass@1, steps, seconds
        decision    TEXT,                   -- the gate's verdict on this recipe against the champion
        chosen      INTEGER NOT NULL DEFAULT 0,
        promoted    INTEGER NOT NULL DEFAULT 0,
        created_at  REAL NOT NULL,
        UNIQUE (cycle_id, idx)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """A connection to the state database.

    ``Store.open(path)`` is the writer (creates and migrates); ``Store.open(path,
    readonly=True)`` is for observers and never takes a write lock.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self.conn = conn
        self.path = path
        self.readonly = readonly

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> "Store":
        path = Path(path)
        if readonly:
            if not path.exists():
                raise SelfloopError(f"no state database at {path} (has the daemon or `selfloop ingest` run here?)")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
            conn.execute("PRAGMA foreign_keys=ON")
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=10000")
        store = cls(conn, path, readonly)
        if readonly:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SelfloopError(f"{path}: schema version {version} is newer than this selfloop ({SCHEMA_VERSION})")
        else:
            store._migrate()
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- schema

    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise SelfloopError(f"{self.path}: schema version {version} is newer than this selfloop ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits first, so the migration runs as its own script
            # wrapped in an explicit transaction (and user_version moves with it).
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[target - 1]}\nPRAGMA user_version = {target};\nCOMMIT;"
            )

    # ----------------------------------------------------------------- access

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all or nothing."""
        if self.readonly:
            raise SelfloopError("read-only store")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # ----------------------------------------------------------------- meta

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ----------------------------------------------------------------- progress

    def set_progress(self, name: str, done: int, total: int, unit: str, **extra: Any) -> None:
        """Publish a long step's progress for the dashboard (meta key ``progress.<name>``)."""
        value = json.dumps({"done": done, "total": total, "unit": unit, "updated": time.time(), **extra})
        with self.tx() as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"progress.{name}", value),
            )

    def clear_progress(self, name: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM meta WHERE key = ?", (f"progress.{name}",))

    # ----------------------------------------------------------------- events

    def event(self, kind: str, message: str, **data: Any) -> None:
        """Record a daemon state change (file seen, ingested, judged, trained, promoted...).

        Joins the caller's transaction if one is open, else commits on its own.
        """
        row = (time.time(), kind, message, json.dumps(data, default=str))
        sql = "INSERT INTO events (ts, kind, message, data) VALUES (?, ?, ?, ?)"
        if self.conn.in_transaction:
            self.conn.execute(sql, row)
        else:
            with self.tx() as c:
                c.execute(sql, row)

    def recent_events(self, limit: int = 20) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))

    def integrity_ok(self) -> bool:
        return self.scalar("PRAGMA integrity_check") == "ok"


# --------------------------------------------------------------------------- daemon lock


class DaemonLock:
    """One daemon per state dir: an exclusive file lock plus a pid file for messages.

    The lock (filelock, an OS-level lock) is released by the kernel if the daemon
    dies, so a stale pid file never blocks a restart.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.lock = FileLock(str(self.state_dir / "daemon.lock"), timeout=0)
        self.pid_file = self.state_dir / "daemon.pid"

    def acquire(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            info = read_pid_file(self.pid_file)
            who = (
                f"pid {info['pid']}, started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['started']))}"
                if info
                else "unknown pid"
            )
            raise AlreadyRunning(
                f"another selfloop daemon is running on {self.state_dir} ({who}); stop it first"
            ) from None
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
        os.replace(tmp, self.pid_file)

    def release(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.lock.release()

    def __enter__(self) -> "DaemonLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(Path(path).read_text())
        return info if isinstance(info, dict) and "pid" in info else None
    except (OSError, ValueError):
        return None


def daemon_alive(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's pid info, or None. Probes the lock without holding it."""
    state_dir = Path(state_dir)
    if not (state_dir / "daemon.lock").exists():
        return None
    probe = FileLock(str(state_dir / "daemon.lock"), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return read_pid_file(state_dir / "daemon.pid") or {"pid": None, "started": None}
    probe.release()
    return None
