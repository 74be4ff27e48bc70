"""Queries of frontier growth: one row per step of a family (generation 0 or a round).

Not covered: running the steps (``selfloop.frontier.run``) or scheduling them (``selfloop.loop.daemon``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from selfloop.store.db import Store


def record_step(store: Store, result: dict[str, Any]) -> int:
    """Store a step's result as ``selfloop.frontier.run`` wrote it."""
    with store.tx() as conn:
        cur = conn.execute(
            "INSERT INTO frontier_steps (family, kind, round, level, generation, promoted, reason, result, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result["family"],
                result["kind"],
                result.get("round"),
                result.get("level"),
                result["generation"],
                int(bool(result["promoted"])),
                result["reason"],
                json.dumps(result, default=str),
                time.time(),
            ),
        )
        return int(cur.lastrowid)


def steps(store: Store, family: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` steps (of one family or all), oldest first, each the stored result plus its row id."""
    where, args = ("WHERE family = ?", (family,)) if family else ("", ())
    rows = store.query(f"SELECT id, result FROM frontier_steps {where} ORDER BY id DESC LIMIT ?", (*args, limit))
    return [{"id": r["id"], **json.loads(r["result"])} for r in reversed(rows)]


def families(store: Store) -> list[str]:
    return [r["family"] for r in store.query("SELECT DISTINCT family FROM frontier_steps ORDER BY family")]
