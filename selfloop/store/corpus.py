"""Read-only corpus queries for other components (training mixture, status, dashboard).

Covers documents by origin / split / kind / status, counts by status and by
reason code, per-origin-and-split totals, and quarantined files. Writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from selfloop.records import Doc
from selfloop.store import Store

# The code part of a stored "code: detail" reason, in SQL.
_CODE = "substr(reason, 1, instr(reason || ':', ':') - 1)"


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
        f"SELECT status, {_CODE} AS code, count(*) AS n FROM documents WHERE status IN ('dropped', 'duplicate')"
        " GROUP BY status, code ORDER BY n DESC, code"
    )
    return [(r["status"], r["code"], r["n"]) for r in rows]


def active_totals(store: Store) -> dict[tuple[str, str], tuple[int, int]]:
    """(origin, split) -> (active documents, characters)."""
    rows = store.query(
        "SELECT origin, split, count(*), coalesce(sum(n_chars), 0) FROM documents WHERE status = 'active' GROUP BY origin, split"
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def quarantined_files(store: Store) -> list[sqlite3.Row]:
    """Files refused whole (path, origin, reason, updated_at), by path."""
    return store.query("SELECT path, origin, reason, updated_at FROM files WHERE status = 'quarantined' ORDER BY path")


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
