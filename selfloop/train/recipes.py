"""The recipe history in the state store: what each cycle's recipe search tried and chose.

One ``recipes`` row per recipe a cycle trained: its searched values, its
challenger's figures (held-out loss, pass@1 per family, steps, seconds), the
gate's verdict on it, whether the cycle chose it and whether it was promoted.
The last chosen-and-promoted row is the next cycle's incumbent. Rows outlive
the generations they describe (which ``keep_generations`` prunes).

Covers: the one table both ``selfloop models`` and the dashboard show (the rows
are read and written by ``selfloop.store.runs``). Does not cover: proposing or
choosing (``selfloop.train.search``).
"""

from __future__ import annotations

from typing import Any

# The history lives in the store; these are the names selfloop models, the dashboard and the cycle use.
from selfloop.store.runs import last_winner
from selfloop.store.runs import mark_recipe_promoted as mark_promoted
from selfloop.store.runs import recipe_history as history
from selfloop.store.runs import record_recipes as record

__all__ = ["history", "history_table", "last_winner", "mark_promoted", "record"]


def history_table(rows: list[dict[str, Any]], title: str = "recipe search"):
    """A rich Table of recipe rows: cycle, generation, values, figures, outcome."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("cycle", "gen", "#", "lr", "steps", "rework share", "held-out loss", "pass@1", "outcome"):
        table.add_column(col)
    for r in rows:
        p, f = r["params"], r["figures"]
        tasks = f.get("tasks") or {}
        outcome = ("promoted" if r["promoted"] else "chosen") if r["chosen"] else ""
        table.add_row(
            str(r["cycle_id"]),
            str(r["generation"]),
            str(r["idx"]) + (" (incumbent)" if r["idx"] == 0 else ""),
            f"{p.get('learning_rate', 0):.2e}",
            str(p.get("max_steps", "-")),
            f"{p.get('rework_max_share', 0):.2f}",
            f"{f['loss']:.4f}" if isinstance(f.get("loss"), (int, float)) else "-",
            " ".join(f"{k} {v:.2f}" for k, v in sorted(tasks.items())) or "-",
            outcome or (r["decision"] or "")[:60],
        )
    return table
