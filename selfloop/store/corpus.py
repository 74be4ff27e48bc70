"""The corpus in the store: the ``documents`` and ``files`` tables.

Read-only queries for other components (training mixture, status, dashboard):
documents by origin / split / kind / status, counts by status and by reason code,
per-origin-and-split totals, and quarantined files. Then what the ingestor reads
and writes, one small function per statement. Functions that write run on the
store's connection: inside the caller's ``store.tx()`` when there is one (one file,
one transaction); those that open their own transaction say so.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

from selfloop.records import Doc
from selfloop.store.db import Store

# The code part of a stored "code: detail" reason, in SQL.
REASON_CODE = "substr(reason, 1, instr(reason || ':', ':') - 1)"


def documents(
    store: Store,
    *,
    origin: str | None = None,
    split: str | None = None,
    kind: str | None = None,
    status: str | None = "active",
) -> Iterator[sqlite3.Row]:
    """Documents in id order (stable across calls); a filter left as None matches everything."""
    where, params = [], []
    for column, value in (("origin", origin), ("split", split), ("kind", kind), ("status", status)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT * FROM documents" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
    yield from store.conn.execute(sql, params)


def status_counts(store: Store) -> dict[str, int]:
    """Documents per status (active, dropped, duplicate, removed)."""
    return {r[0]: r[1] for r in store.query("SELECT status, count(*) FROM documents GROUP BY status")}


def reason_counts(store: Store) -> list[tuple[str, str, int]]:
    """(status, reason code, count) for dropped and duplicate documents, largest first."""
    rows = store.query(
        f"SELECT status, {REASON_CODE} AS code, count(*) AS n FROM documents WHERE status IN ('dropped', 'duplicate')"
        " GROUP BY status, code ORDER BY n DESC, code"
    )
    return [(r["status"], r["code"], r["n"]) for r in rows]


def active_totals(store: Store) -> dict[tuple[str, str], tuple[int, int]]:
    """(origin, split) -> (active documents, characters)."""
    rows = store.query(
        "SELECT origin, split, count(*), coalesce(sum(n_chars), 0) FROM documents WHERE status = 'active'"
        " GROUP BY origin, split"
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def quarantined_files(store: Store) -> list[sqlite3.Row]:
    """Files refused whole (path, origin, reason, updated_at), by path."""
    return store.query("SELECT path, origin, reason, updated_at FROM files WHERE status = 'quarantined' ORDER BY path")


# --------------------------------------------------------------------------- files (ingest)


def file_row(store: Store, key: str) -> sqlite3.Row | None:
    """The ``files`` row of ``key`` (any status), or None."""
    return store.conn.execute("SELECT * FROM files WHERE path = ?", (key,)).fetchone()


def tracked_files(store: Store) -> list[str]:
    """Keys of the files not marked removed, by path."""
    return [r[0] for r in store.query("SELECT path FROM files WHERE status != 'removed' ORDER BY path")]


def tracked_under(store: Store, key: str) -> list[str]:
    """Keys not marked removed that are ``key`` itself or lie under it as a directory."""
    prefix = key + "/"
    rows = store.query(
        "SELECT path FROM files WHERE status != 'removed' AND (path = ? OR substr(path, 1, ?) = ?)",
        (key, len(prefix), prefix),
    )
    return [r[0] for r in rows]


def file_stats(store: Store) -> dict[str, tuple[int | None, int | None]]:
    """Key -> (size, mtime_ns) of the files not marked removed."""
    rows = store.query("SELECT path, size, mtime_ns FROM files WHERE status != 'removed'")
    return {r[0]: (r[1], r[2]) for r in rows}


def upsert_file(
    store: Store,
    key: str,
    origin: str,
    size: int | None,
    mtime_ns: int | None,
    sha: str | None,
    status: str,
    reason: str | None,
    n_docs: int,
    n_dropped: int,
) -> None:
    store.conn.execute(
        "INSERT INTO files (path, origin, size, mtime_ns, sha256, status, reason, n_docs, n_dropped, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET origin = excluded.origin,"
        " size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, status = excluded.status,"
        " reason = excluded.reason, n_docs = excluded.n_docs, n_dropped = excluded.n_dropped,"
        " updated_at = excluded.updated_at",
        (key, origin, size, mtime_ns, sha, status, reason, n_docs, n_dropped, time.time()),
    )


def touch_file(store: Store, key: str, size: int | None, mtime_ns: int | None) -> None:
    """New size and mtime for a file whose content did not change; its own transaction."""
    with store.tx() as c:
        c.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, updated_at = ? WHERE path = ?",
            (size, mtime_ns, time.time(), key),
        )


def mark_file_removed(store: Store, key: str) -> None:
    store.conn.execute(
        "UPDATE files SET status = 'removed', reason = 'deleted', n_docs = 0, updated_at = ? WHERE path = ?",
        (time.time(), key),
    )


# --------------------------------------------------------------------------- documents (ingest)


def insert_document(
    store: Store,
    file_path: str,
    locator: str,
    origin: str,
    kind: str,
    fmt: str,
    digest: str,
    content: str,
    split: str,
    status: str,
    reason: str | None,
    minhash: bytes | None = None,
    dup_of: int | None = None,
) -> int:
    """Store one document; returns its id."""
    now = time.time()
    cur = store.conn.execute(
        "INSERT INTO documents (file_path, locator, origin, kind, format, hash, content, n_chars, split, status,"
        " reason, minhash, dup_of, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            file_path,
            locator,
            origin,
            kind,
            fmt,
            digest,
            content,
            len(content),
            split,
            status,
            reason,
            minhash,
            dup_of,
            now,
            now,
        ),
    )
    return int(cur.lastrowid)


def retire_documents(store: Store, key: str) -> list[int]:
    """Mark the documents of file ``key`` removed; returns their ids."""
    ids = [
        r[0] for r in store.conn.execute("SELECT id FROM documents WHERE file_path = ? AND status != 'removed'", (key,))
    ]
    store.conn.execute(
        "UPDATE documents SET status = 'removed', updated_at = ? WHERE file_path = ? AND status != 'removed'",
        (time.time(), key),
    )
    return ids


def known_hashes(store: Store, digests: list[str]) -> Iterator[sqlite3.Row]:
    """(hash, id, file_path, locator, split, status) of every document with one of ``digests``, in id order per hash."""
    unique = list(dict.fromkeys(digests))
    for start in range(0, len(unique), 500):  # well under SQLite's limit on bound parameters
        chunk = unique[start : start + 500]
        yield from store.conn.execute(
            "SELECT hash, id, file_path, locator, split, status FROM documents"
            f" WHERE hash IN ({','.join('?' * len(chunk))}) ORDER BY id",
            chunk,
        )


def first_active(store: Store, digest: str) -> sqlite3.Row | None:
    """(id, file_path, locator) of the first active document with hash ``digest``, or None."""
    return store.conn.execute(
        "SELECT id, file_path, locator FROM documents WHERE hash = ? AND status = 'active' ORDER BY id LIMIT 1",
        (digest,),
    ).fetchone()


def place_of(store: Store, doc_id: int) -> sqlite3.Row:
    """(file_path, locator) of a document."""
    return store.conn.execute("SELECT file_path, locator FROM documents WHERE id = ?", (doc_id,)).fetchone()


def duplicates_of(store: Store, ids: list[int]) -> list[sqlite3.Row]:
    """(id, kind, hash, content) of the documents stored as duplicates of one of ``ids``, in id order."""
    marks = ",".join("?" * len(ids))
    return store.conn.execute(
        f"SELECT id, kind, hash, content FROM documents WHERE status = 'duplicate' AND dup_of IN ({marks}) ORDER BY id",
        ids,
    ).fetchall()


def mark_duplicate(store: Store, doc_id: int, reason: str, dup_of: int | None) -> None:
    """A duplicate document now duplicates another: its reason and target change."""
    store.conn.execute(
        "UPDATE documents SET reason = ?, dup_of = ?, updated_at = ? WHERE id = ?",
        (reason, dup_of, time.time(), doc_id),
    )


def reactivate(store: Store, doc_id: int, minhash: bytes | None) -> None:
    """A duplicate document becomes active (what it duplicated is gone)."""
    store.conn.execute(
        "UPDATE documents SET status = 'active', reason = NULL, dup_of = NULL, minhash = ?, updated_at = ?"
        " WHERE id = ?",
        (minhash, time.time(), doc_id),
    )


def active_signatures(store: Store) -> list[sqlite3.Row]:
    """(id, minhash) of the active documents that near-dedup looks at (text and chat)."""
    return store.query("SELECT id, minhash FROM documents WHERE status = 'active' AND kind IN ('text', 'chat')")


def contents(store: Store, ids: list[int]) -> list[sqlite3.Row]:
    """(id, kind, content) of the documents ``ids``, in no particular order."""
    marks = ",".join("?" * len(ids))
    return store.query(f"SELECT id, kind, content FROM documents WHERE id IN ({marks})", tuple(ids))


def set_signatures(store: Store, signatures: list[tuple[bytes, int]]) -> None:
    """Store (minhash, id) pairs; its own transaction."""
    with store.tx() as c:
        c.executemany("UPDATE documents SET minhash = ? WHERE id = ?", signatures)


# ---- documents for training, rework and tasks


def load_documents(store: Store, *, split: str, origin: str) -> list[Doc]:
    """Active documents of one split and origin, in id order (the deterministic base order)."""
    rows = store.query(
        "SELECT id, origin, kind, content, n_chars, hash FROM documents "
        "WHERE status = 'active' AND split = ? AND origin = ? ORDER BY id",
        (split, origin),
    )
    return [Doc(r["id"], r["origin"], r["kind"], r["content"], r["n_chars"], r["hash"]) for r in rows]


def rework_sources(store: Store) -> list[sqlite3.Row]:
    """(id, kind, format, content) of active train-split text and chat documents, any origin, by id."""
    return store.query(
        "SELECT id, kind, format, content FROM documents WHERE status = 'active' AND split = 'train' "
        "AND kind IN ('text', 'chat') ORDER BY id"
    )


def task_documents(store: Store) -> list[tuple[int, str]]:
    """(id, content) of active train-split task documents of orig/, by id (held-out ones are never drawn)."""
    rows = store.query(
        "SELECT id, content FROM documents WHERE status = 'active' AND split = 'train' AND kind = 'task' "
        "AND origin = 'orig' ORDER BY id"
    )
    return [(r["id"], r["content"]) for r in rows]


def has_task_documents(store: Store) -> bool:
    """Whether any active train-split task document exists (of any origin)."""
    return bool(
        store.scalar("SELECT COUNT(*) FROM documents WHERE status = 'active' AND split = 'train' AND kind = 'task'")
    )


def reference_documents(store: Store) -> list[sqlite3.Row]:
    """(id, kind, format, hash, content) of active train-split text and chat documents of orig/ only, by id.

    What the judges' reference is built from: never model-written rework, never held-out documents.
    """
    return store.query(
        "SELECT id, kind, format, hash, content FROM documents WHERE status = 'active' AND split = 'train' "
        "AND origin = 'orig' AND kind IN ('text', 'chat') ORDER BY id"
    )
