import sqlite3
import subprocess
import sys
import textwrap

import pytest

from selfloop.errors import AlreadyRunning, SelfloopError
from selfloop.store import SCHEMA_VERSION, DaemonLock, Store, daemon_alive


def test_creates_wal_schema(tmp_path):
    with Store.open(tmp_path / "s" / "state.db") as s:
        assert s.version == SCHEMA_VERSION
        assert s.scalar("PRAGMA journal_mode") == "wal"
        tables = {r[0] for r in s.query("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"files", "documents", "candidates", "verdicts", "generations", "cycles", "events", "pairs"} <= tables
        assert s.integrity_ok()


def test_reopen_is_idempotent(tmp_path):
    db = tmp_path / "state.db"
    Store.open(db).close()
    with Store.open(db) as s:
        s.event("x", "once")
    with Store.open(db) as s:
        assert s.version == SCHEMA_VERSION
        assert s.scalar("SELECT COUNT(*) FROM events") == 1


def test_newer_schema_refused(tmp_path):
    db = tmp_path / "state.db"
    Store.open(db).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(SelfloopError, match="newer"):
        Store.open(db)


def test_transaction_is_all_or_nothing(tmp_path):
    with Store.open(tmp_path / "state.db") as s:
        with pytest.raises(RuntimeError):
            with s.tx() as c:
                s.event("a", "inside")
                c.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
                raise RuntimeError("boom")
        assert s.scalar("SELECT COUNT(*) FROM events") == 0
        assert s.get_meta("k") is None
        s.set_meta("k", "v2")
        assert s.get_meta("k") == "v2"


def test_reader_not_blocked_by_open_write_transaction(tmp_path):
    db = tmp_path / "state.db"
    writer = Store.open(db)
    writer.event("e", "committed")
    with writer.tx() as c:
        c.execute("INSERT INTO events (ts, kind, message) VALUES (0, 'e', 'uncommitted')")
        # A read-only observer (status, dashboard) sees the last committed state at once.
        reader = Store.open(db, readonly=True)
        assert reader.scalar("SELECT COUNT(*) FROM events") == 1
        with pytest.raises(sqlite3.OperationalError):
            reader.conn.execute("INSERT INTO meta VALUES ('a', 'b')")
        reader.close()
    writer.close()


def test_readonly_missing_db_is_clear(tmp_path):
    with pytest.raises(SelfloopError, match="no state database"):
        Store.open(tmp_path / "none.db", readonly=True)


def test_lock_refuses_second_daemon_with_pid(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from selfloop.store import DaemonLock
            lock = DaemonLock(Path({str(tmp_path)!r}))  # kept referenced: filelock releases on GC
            lock.acquire()
            print("locked", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"):
            DaemonLock(tmp_path).acquire()
        assert daemon_alive(tmp_path)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with the process: a restart is never blocked by a stale pid file.
    assert daemon_alive(tmp_path) is None
    with DaemonLock(tmp_path):
        assert (tmp_path / "daemon.pid").exists()
    assert not (tmp_path / "daemon.pid").exists()


def test_progress_is_published_and_cleared(tmp_path):
    import json

    with Store.open(tmp_path / "state.db") as s:
        s.set_progress("ingest", 3, 10, "files")
        assert json.loads(s.get_meta("progress.ingest"))["done"] == 3
        s.clear_progress("ingest")
        assert s.get_meta("progress.ingest") is None
