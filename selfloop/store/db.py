"""The state store: one SQLite database (WAL mode) in the state dir.

Holds everything the daemon must remember across restarts: files, documents, candidates and verdicts, pairs,
generations, cycles and phases, training metrics and the event log. WAL: writers are transactional and crash-safe;
readers (``selfloop status``, the dashboard) open it read-only and never block the daemon. The schema is versioned
with ``PRAGMA user_version``; ``MIGRATIONS[i]`` moves version i to i+1 in one transaction.

Does not cover: domain queries (they live next to their domain: corpus, registry, rework).
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
from selfloop.store.schema import MIGRATIONS, SCHEMA_VERSION


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
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, str]) -> None:
        """Several ``meta`` keys in one transaction."""
        with self.tx() as c:
            c.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # ----------------------------------------------------------------- progress

    def set_progress(self, name: str, done: int, total: int, unit: str, **extra: Any) -> None:
        """Publish a long step's progress for the dashboard (meta key ``progress.<name>``)."""
        self.set_meta(
            f"progress.{name}",
            json.dumps({"done": done, "total": total, "unit": unit, "updated": time.time(), **extra}),
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

    def events_after(self, last_id: int, limit: int = 1000) -> list[sqlite3.Row]:
        """Events with an id above ``last_id``, oldest first (the events.jsonl export)."""
        return self.query("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))

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
