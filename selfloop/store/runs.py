"""Queries of the training side: cycles, the generations mirror, training metrics, the recipe history.

Callers pass the ``Store`` and get plain values back; JSON columns are encoded and
decoded here. Not covered: what the values mean (``selfloop.loop``, ``selfloop.model.registry``,
``selfloop.train``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from selfloop.store.db import Store

# --------------------------------------------------------------------------- cycles


@dataclass(frozen=True)
class OpenCycle:
    """A cycle left ``running`` or ``interrupted``: the one ``run_cycle`` resumes."""

    id: int
    generation: int
    detail: dict[str, Any]


def open_cycle(store: Store) -> OpenCycle | None:
    row = store.query(
        "SELECT id, generation, detail FROM cycles WHERE status IN ('running', 'interrupted') ORDER BY id DESC LIMIT 1"
    )
    return OpenCycle(row[0]["id"], row[0]["generation"], json.loads(row[0]["detail"])) if row else None


def last_generation_used(store: Store) -> int | None:
    """The highest generation number any generation row or cycle has taken."""
    used = [store.scalar("SELECT MAX(id) FROM generations"), store.scalar("SELECT MAX(generation) FROM cycles")]
    return max((u for u in used if u is not None), default=None)


def start_cycle(store: Store, generation: int, detail: dict[str, Any]) -> int:
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO cycles (started_at, phase, status, generation, detail) VALUES (?, 'start', 'running', ?, ?)",
            (time.time(), generation, json.dumps(detail)),
        )
        return int(cur.lastrowid)


def save_cycle(
    store: Store,
    cycle_id: int,
    phase: str,
    status: str,
    detail: dict[str, Any],
    *,
    error: str | None = None,
    finished: bool = False,
) -> None:
    with store.tx() as c:
        c.execute(
            "UPDATE cycles SET phase = ?, status = ?, detail = ?, error = ?, finished_at = ? WHERE id = ?",
            (phase, status, json.dumps(detail, default=str), error, time.time() if finished else None, cycle_id),
        )


# --------------------------------------------------------------------------- generations


def mirror_generation(store: Store, n: int, path: str, manifest: dict[str, Any]) -> None:
    """The ``generations`` row of generation ``n`` from its manifest (inserted or replaced)."""
    row = (
        n,
        manifest.get("parent"),
        path,
        manifest.get("status", "candidate"),
        json.dumps(manifest.get("metrics", {}), default=str),
        json.dumps(manifest.get("gate", {}), default=str),
        json.dumps(manifest.get("recipe", {}), default=str),
        manifest.get("created_at", time.time()),
        manifest.get("decided_at"),
    )
    with store.tx() as c:
        c.execute(
            "INSERT INTO generations (id, parent, path, status, metrics, gate, recipe, created_at, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET parent = excluded.parent, "
            "path = excluded.path, status = excluded.status, metrics = excluded.metrics, gate = excluded.gate, "
            "recipe = excluded.recipe, decided_at = excluded.decided_at",
            row,
        )


def mark_pruned(store: Store, n: int) -> None:
    with store.tx() as c:
        c.execute("UPDATE generations SET status = 'pruned' WHERE id = ?", (n,))


# --------------------------------------------------------------------------- training metrics


def add_train_metric(store: Store, row: dict[str, Any]) -> None:
    """One Trainer log line: generation, step, loss, lr, tokens_per_s, eta_s, ts."""
    with store.tx() as c:
        c.execute(
            "INSERT INTO train_metrics (generation, step, kind, loss, lr, tokens_per_s, eta_s, ts) "
            "VALUES (:generation, :step, 'train', :loss, :lr, :tokens_per_s, :eta_s, :ts)",
            row,
        )


# --------------------------------------------------------------------------- recipes


def last_winner(store: Store) -> dict[str, Any] | None:
    """The searched values of the newest recipe that won its cycle and was promoted."""
    row = store.query("SELECT params FROM recipes WHERE chosen = 1 AND promoted = 1 ORDER BY id DESC LIMIT 1")
    return json.loads(row[0]["params"]) if row else None


def record_recipes(store: Store, cycle_id: int, generation: int, entries: list[dict[str, Any]], chosen: int) -> None:
    """Write (or, on a resumed evaluation, rewrite) the recipes of a cycle: ``params``, ``figures``, ``decision``."""
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


def mark_recipe_promoted(store: Store, cycle_id: int) -> None:
    """The cycle's chosen recipe was promoted: it is the incumbent from now on."""
    with store.tx() as c:
        c.execute("UPDATE recipes SET promoted = 1 WHERE cycle_id = ? AND chosen = 1", (cycle_id,))


def recipe_history(store: Store, limit: int = 30) -> list[dict[str, Any]]:
    """The newest ``limit`` recipes, oldest first, with params and figures decoded."""
    try:
        rows = store.query("SELECT * FROM recipes ORDER BY id DESC LIMIT ?", (limit,))
    except sqlite3.OperationalError:  # a read-only view of a database the daemon has not migrated yet
        return []
    return [{**dict(r), "params": json.loads(r["params"]), "figures": json.loads(r["figures"])} for r in reversed(rows)]
