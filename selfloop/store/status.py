"""Read-only views of the state store for `selfloop status` and the dashboard.

Covers documents, quarantined files, generations, cycles, candidates, training
metrics and meta, as the two views show them. Writes nothing; decoding a
row's JSON columns is the caller's.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from selfloop.store import Store
from selfloop.store.corpus import REASON_CODE

# The locator of a document that is one line of its file (a JSONL record).
_LINE = re.compile(r"line (\d+)")

# --------------------------------------------------------------------------- status


def document_counts(store: Store) -> list[dict[str, Any]]:
    """Documents per origin, status and reason code (of dropped and duplicate ones), with their characters."""
    # Grouped by position: a GROUP BY name would bind to the stored `reason` column (whole texts), not the alias.
    return [
        dict(r)
        for r in store.query(
            "SELECT origin, status,"
            f" CASE WHEN status IN ('dropped', 'duplicate') THEN {REASON_CODE} ELSE '' END AS reason,"
            " COUNT(*) AS n, SUM(n_chars) AS chars FROM documents GROUP BY 1, 2, 3 ORDER BY 1, 2, 4 DESC, 3"
        )
    ]


def file_outcomes(store: Store) -> list[dict[str, Any]]:
    """Every file not removed, by path: status, quarantine reason, accepted documents, dropped ones by reason code,
    and the line numbers of the dropped ones that are single lines (JSONL records)."""
    files = {
        r["path"]: {
            "path": r["path"],
            "origin": r["origin"],
            "status": r["status"],
            "reason": r["reason"],
            "accepted": 0,
            "dropped": {},
            "lines": {},
        }
        for r in store.query("SELECT path, origin, status, reason FROM files WHERE status != 'removed' ORDER BY path")
    }
    rows = store.query(
        f"SELECT file_path, status, {REASON_CODE} AS code, locator FROM documents WHERE status != 'removed' ORDER BY id"
    )
    for r in rows:
        out = files.get(r["file_path"])
        if out is None:
            continue
        if r["status"] == "active":
            out["accepted"] += 1
            continue
        out["dropped"][r["code"]] = out["dropped"].get(r["code"], 0) + 1
        line = _LINE.fullmatch(r["locator"])
        if line:
            out["lines"].setdefault(r["code"], []).append(int(line.group(1)))
    return list(files.values())


def quarantined(store: Store) -> list[dict[str, Any]]:
    """Files refused whole (path, reason, updated_at), by path."""
    return [
        dict(r)
        for r in store.query("SELECT path, reason, updated_at FROM files WHERE status = 'quarantined' ORDER BY path")
    ]


def generations(store: Store) -> list[sqlite3.Row]:
    """Every generation row (id, parent, path, status, metrics, gate, created_at, decided_at), by id."""
    return store.query(
        "SELECT id, parent, path, status, metrics, gate, created_at, decided_at FROM generations ORDER BY id"
    )


def last_cycle(store: Store) -> dict[str, Any] | None:
    """The newest cycle row, whole."""
    rows = store.query("SELECT * FROM cycles ORDER BY id DESC LIMIT 1")
    return dict(rows[0]) if rows else None


def candidate_counts(store: Store) -> list[dict[str, Any]]:
    """Rework candidates per status and reason, largest first."""
    return [
        dict(r)
        for r in store.query(
            "SELECT status, COALESCE(reason, '') AS reason, COUNT(*) AS n FROM candidates "
            "GROUP BY status, reason ORDER BY n DESC"
        )
    ]


def judge_figures(store: Store) -> list[dict[str, Any]]:
    """Per judge, over every cycle's candidates: verdicts given, accepts, accept rate, and rejections by reason code
    (most frequent first). A judge sees only what the judges before it in its pipeline accepted."""
    rows = store.query(
        f"SELECT judge, status, CASE WHEN status = 'reject' THEN {REASON_CODE} ELSE '' END AS code, COUNT(*) AS n "
        "FROM verdicts GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC, 3"
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        fig = out.setdefault(r["judge"], {"judge": r["judge"], "verdicts": 0, "accepted": 0, "rejected_by": {}})
        fig["verdicts"] += r["n"]
        if r["status"] == "accept":
            fig["accepted"] += r["n"]
        else:
            fig["rejected_by"][r["code"] or "?"] = r["n"]
    for fig in out.values():
        fig["accept_rate"] = round(fig["accepted"] / fig["verdicts"], 4)
    return list(out.values())


# --------------------------------------------------------------------------- dashboard


def meta(store: Store) -> dict[str, str]:
    """Every meta key and its value."""
    return {r["key"]: r["value"] for r in store.query("SELECT key, value FROM meta")}


def running_cycle(store: Store) -> sqlite3.Row | None:
    """The newest running cycle (id, phase, generation), if any."""
    rows = store.query("SELECT id, phase, generation FROM cycles WHERE status = 'running' ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def last_trained_generation(store: Store) -> int | None:
    """The newest generation with training metrics."""
    return store.scalar("SELECT MAX(generation) FROM train_metrics")


def losses(store: Store, generation: int) -> list[sqlite3.Row]:
    """(step, kind, loss) of every metric row of a generation that has a loss, in the order written."""
    return store.query(
        "SELECT step, kind, loss FROM train_metrics WHERE generation = ? AND loss IS NOT NULL ORDER BY id",
        (generation,),
    )


def last_train_step(store: Store, generation: int) -> sqlite3.Row | None:
    """The newest training row (step, tokens_per_s, eta_s) of a generation."""
    rows = store.query(
        "SELECT step, tokens_per_s, eta_s FROM train_metrics WHERE generation = ? AND kind = 'train' "
        "ORDER BY id DESC LIMIT 1",
        (generation,),
    )
    return rows[0] if rows else None


def verdict_counts(store: Store, limit: int = 12) -> list[sqlite3.Row]:
    """(status, reason, count) of judged candidates, largest first."""
    return store.query(
        "SELECT status, reason, COUNT(*) FROM candidates WHERE status != 'pending' GROUP BY status, reason "
        "ORDER BY 3 DESC LIMIT ?",
        (limit,),
    )


def cycle_candidate_counts(store: Store, cycle_id: int) -> dict[str, int]:
    """A cycle's candidates per status."""
    return dict(store.query("SELECT status, COUNT(*) FROM candidates WHERE cycle_id = ? GROUP BY status", (cycle_id,)))


def corpus_counts(store: Store) -> list[sqlite3.Row]:
    """(origin, status, n, chars) of documents."""
    return store.query(
        "SELECT origin, status, COUNT(*) AS n, COALESCE(SUM(n_chars), 0) AS chars FROM documents "
        "GROUP BY origin, status"
    )


def recent_quarantined(store: Store, limit: int = 8) -> list[sqlite3.Row]:
    """(path, reason) of the most recently quarantined files."""
    return store.query(
        "SELECT path, reason FROM files WHERE status = 'quarantined' ORDER BY updated_at DESC LIMIT ?", (limit,)
    )
