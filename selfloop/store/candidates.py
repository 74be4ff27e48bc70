"""Candidates, their verdicts and preference pairs: the rows of the rework and judge phases.

Callers pass the ``Store`` and get plain values or rows back; the JSON columns
(``source_ids``, ``meta``, ``scores``, a verdict's ``detail``) are encoded here.
Not here: what is sampled or how it is judged (``selfloop.rework``, ``selfloop.judge``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from selfloop.store.db import Store

_INSERT_PAIR = "INSERT INTO pairs (cycle_id, prompt, chosen, rejected, source, created_at) VALUES (?, ?, ?, ?, ?, ?)"


class NewCandidate(Protocol):
    """What a stored candidate is made from (a rework draft); ``meta``, where a draft has it, goes along."""

    strategy: str
    kind: str
    source_ids: Sequence[int]
    content: str
    prompt: str | None
    completion: str | None
    original: str | None


class Verdict(Protocol):
    """One judge's verdict on a candidate."""

    judge: str
    status: str
    score: float | None
    reason: str
    detail: dict[str, Any]


def count(store: Store, cycle_id: int, status: str | None = None) -> int:
    """Candidates of a cycle (of one status, or all)."""
    if status is None:
        return store.scalar("SELECT COUNT(*) FROM candidates WHERE cycle_id = ?", (cycle_id,))
    return store.scalar("SELECT COUNT(*) FROM candidates WHERE cycle_id = ? AND status = ?", (cycle_id, status))


def insert_candidates(
    store: Store, cycle_id: int, generation: int, drafts: Sequence[NewCandidate], *, unless_stored: bool = False
) -> int:
    """``drafts`` as pending candidates in one transaction; with ``unless_stored``, none if the cycle has any yet."""
    now = time.time()
    with store.tx() as c:
        if unless_stored and c.execute("SELECT COUNT(*) FROM candidates WHERE cycle_id = ?", (cycle_id,)).fetchone()[0]:
            return 0
        c.executemany(
            "INSERT INTO candidates (cycle_id, generation, strategy, kind, source_ids, content, status, prompt,"
            " completion, original, meta, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
            [
                (
                    cycle_id,
                    generation,
                    d.strategy,
                    d.kind,
                    json.dumps(list(d.source_ids)),
                    d.content,
                    d.prompt,
                    d.completion,
                    d.original,
                    json.dumps(getattr(d, "meta", {})),
                    now,
                )
                for d in drafts
            ],
        )
    return len(drafts)


def pending(store: Store, cycle_id: int) -> list[sqlite3.Row]:
    """A cycle's candidates still to judge, in id order (whole rows)."""
    return store.query("SELECT * FROM candidates WHERE cycle_id = ? AND status = 'pending' ORDER BY id", (cycle_id,))


def record_outcome(
    store: Store,
    cycle_id: int,
    candidate_id: int,
    verdicts: Sequence[Verdict],
    *,
    accepted: bool,
    reason: str,
    pair: tuple[str, str, str] | None = None,
) -> None:
    """A candidate's verdicts (replacing earlier ones), status, scores and its ``a_vs_b`` pair
    (prompt, chosen, rejected): one transaction."""
    now = time.time()
    scores = {v.judge: v.score for v in verdicts if v.score is not None}
    with store.tx() as c:
        c.execute("DELETE FROM verdicts WHERE candidate_id = ?", (candidate_id,))
        c.executemany(
            "INSERT INTO verdicts (candidate_id, judge, status, score, reason, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (candidate_id, v.judge, v.status, v.score, v.reason, json.dumps(v.detail, default=str), now)
                for v in verdicts
            ],
        )
        c.execute(
            "UPDATE candidates SET status = ?, reason = ?, scores = ? WHERE id = ?",
            ("accepted" if accepted else "rejected", reason, json.dumps(scores), candidate_id),
        )
        if pair is not None:
            c.execute(_INSERT_PAIR, (cycle_id, *pair, "a_vs_b", now))


def verdicts_of(store: Store, candidate_id: int) -> list[sqlite3.Row]:
    """(judge, status, score, reason) of a candidate's verdicts, in the order they were given."""
    return store.query(
        "SELECT judge, status, score, reason FROM verdicts WHERE candidate_id = ? ORDER BY id", (candidate_id,)
    )


def counts_by_reason(store: Store, cycle_id: int) -> dict[tuple[str, str], int]:
    """(status, reason) -> candidates of a cycle."""
    rows = store.query(
        "SELECT status, reason, COUNT(*) AS n FROM candidates WHERE cycle_id = ? GROUP BY status, reason", (cycle_id,)
    )
    return {(r["status"], r["reason"]): r["n"] for r in rows}


# ---- accepted candidates: the collapse guard and writing them to rework/


def accepted(store: Store, cycle_id: int, strategy: str | None = None) -> list[sqlite3.Row]:
    """Accepted candidates of a cycle (of one strategy, or all), whole rows in id order."""
    if strategy is None:
        return store.query(
            "SELECT * FROM candidates WHERE cycle_id = ? AND status = 'accepted' ORDER BY id", (cycle_id,)
        )
    return store.query(
        "SELECT * FROM candidates WHERE cycle_id = ? AND strategy = ? AND status = 'accepted' ORDER BY id",
        (cycle_id, strategy),
    )


def unwritten_strategies(store: Store, cycle_id: int) -> list[str]:
    """Strategies of a cycle with accepted candidates not yet written to a rework file."""
    return [
        r[0]
        for r in store.query(
            "SELECT DISTINCT strategy FROM candidates WHERE cycle_id = ? AND status = 'accepted'"
            " AND rework_path IS NULL",
            (cycle_id,),
        )
    ]


def unwritten_cycles(store: Store, other_than: int) -> list[int]:
    """Earlier cycles with accepted candidates never written (that cycle failed before writing them)."""
    return [
        r[0]
        for r in store.query(
            "SELECT DISTINCT cycle_id FROM candidates WHERE status = 'accepted' AND rework_path IS NULL"
            " AND cycle_id != ?",
            (other_than,),
        )
    ]


def reject(store: Store, candidate_ids: Iterable[int], reason: str) -> None:
    """Candidates rejected after all (one transaction)."""
    with store.tx() as c:
        c.executemany(
            "UPDATE candidates SET status = 'rejected', reason = ? WHERE id = ?", [(reason, i) for i in candidate_ids]
        )


def mark_written(store: Store, candidate_ids: Iterable[int], path: str) -> None:
    """The rework file the candidates went to (one transaction)."""
    with store.tx() as c:
        c.executemany("UPDATE candidates SET rework_path = ? WHERE id = ?", [(path, i) for i in candidate_ids])


# ---- judged candidates of one strategy: solve's pairs and retries, the curriculum's label accuracy


def judged(store: Store, cycle_id: int, strategy: str) -> list[sqlite3.Row]:
    """(id, status, source_ids, content, completion, meta) of a cycle's judged candidates of a strategy, by id."""
    return store.query(
        "SELECT id, status, source_ids, content, completion, meta FROM candidates WHERE cycle_id = ? AND strategy = ?"
        " AND status != 'pending' ORDER BY id",
        (cycle_id, strategy),
    )


def has_rationalized(store: Store, cycle_id: int, strategy: str) -> bool:
    """Whether the cycle's hinted retries (``meta.rationalized``) are stored already."""
    return bool(
        store.scalar(
            "SELECT COUNT(*) FROM candidates WHERE cycle_id = ? AND strategy = ?"
            " AND json_extract(meta, '$.rationalized')",
            (cycle_id, strategy),
        )
    )


def replace_pairs(store: Store, cycle_id: int, source: str, pairs: Sequence[tuple[str, str, str]]) -> None:
    """A cycle's pairs of one source, (prompt, chosen, rejected), replacing its earlier ones: one transaction."""
    now = time.time()
    with store.tx() as c:
        c.execute("DELETE FROM pairs WHERE cycle_id = ? AND source = ?", (cycle_id, source))
        c.executemany(_INSERT_PAIR, [(cycle_id, *p, source, now) for p in pairs])


def cycle_pairs(store: Store, cycle_id: int) -> list[sqlite3.Row]:
    """(prompt, chosen, rejected, source, created_at, generation) of a cycle's pairs, in the order they were made.

    The generation is that of the cycle's candidates (the model whose samples were paired).
    """
    return store.query(
        "SELECT p.prompt, p.chosen, p.rejected, p.source, p.created_at,"
        " (SELECT generation FROM candidates c WHERE c.cycle_id = p.cycle_id LIMIT 1) AS generation"
        " FROM pairs p WHERE p.cycle_id = ? ORDER BY p.id",
        (cycle_id,),
    )


def preference_pairs(store: Store, sources: Sequence[str]) -> list[sqlite3.Row]:
    """(prompt, chosen, rejected, source) of the pairs from ``sources`` whose two sides differ, newest first."""
    if not sources:
        return []
    marks = ", ".join("?" for _ in sources)
    return store.query(
        f"SELECT prompt, chosen, rejected, source FROM pairs WHERE source IN ({marks}) AND chosen != rejected"
        " ORDER BY id DESC",
        tuple(sources),
    )
