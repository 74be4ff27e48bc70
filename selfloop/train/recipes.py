"""The recipe history in the state store: what each cycle's recipe search tried and chose.

One ``recipes`` row per recipe a cycle trained: its searched values, its
challenger's figures (held-out loss, pass@1 per family, steps, seconds), the
gate's verdict on it, whether the cycle chose it and whether it was promoted.
The last chosen-and-promoted row is the next cycle's incumbent. Rows outlive
the generations they describe (which ``keep_generations`` prunes).

Covers: recording, reading, and the one table both ``selfloop models`` and the
dashboard show. Does not cover: proposing or choosing (``selfloop.train.search``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from selfloop.store import Store


def last_winner(store: Store) -> dict[str, Any] | None:
    """The searched values of the newest recipe that won its cycle and was promoted."""
    row = store.query("SELECT params FROM recipes WHERE chosen = 1 AND promoted = 1 ORDER BY id DESC LIMIT 1")
    return json.loads(row[0]["params"]) if row else None


def record(store: Store, cycle_id: int, generation: int, entries: list[dict[str, Any]], chosen: int) -> None:
    """Write (or, on a resumed evaluation, rewrite) the recipes of a cycle."""
    now = time.time()
    with store.tx() as c:
        for idx, e in enumerate(entries):
            c.execute(
                "INSERT INTO recipes (cycle_id, generation, idx, params, figures, decision, chosen, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cycle_id, idx) DO UPDATE SET params = excluded.params, "
                "figures = excluded.figures, decision = excluded.decision, chosen = excluded.chosen",
                (
                    cycle_id,
                    generation,
                    idx,
                    json.dumps(e["params"]),
                    json.dumps(e["figures"], default=str),
                    e["decision"],
                    int(idx == chosen),
                    now,
                ),
            )


def mark_promoted(store: Store, cycle_id: int) -> None:
    """The cycle's chosen recipe was promoted: it is the incumbent from now on."""
    with store.tx() as c:
        c.execute("UPDATE recipes SET promoted = 1 WHERE cycle_id = ? AND chosen = 1", (cycle_id,))


def history(store: Store, limit: int = 30) -> list[dict[str, Any]]:
    """The newest ``limit`` recipes, oldest first, with params and figures decoded."""
    try:
        rows = store.query("SELECT * FROM recipes ORDER BY id DESC LIMIT ?", (limit,))
    except sqlite3.OperationalError:  # a read-only view of a database the daemon has not migrated yet
        return []
    out = []
    for r in reversed(rows):
        out.append({**dict(r), "params": json.loads(r["params"]), "figures": json.loads(r["figures"])})
    return out
