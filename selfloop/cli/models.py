"""`selfloop models` and `selfloop rollback`: the generations on disk, and moving the champion back.

Kept free of torch/transformers imports: both read manifests and the state store only.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from selfloop.config import load_config
from selfloop.dashboard import frontier_tables, history_table
from selfloop.model.registry import Registry
from selfloop.store import Store
from selfloop.store.frontier import steps as frontier_steps
from selfloop.store.runs import recipe_history as history


def cmd_models(args: Any) -> int:
    """`selfloop models`: one row per generation with its figures and gate decision."""
    _, paths = load_config(args.config)
    reg = Registry(paths.models)
    gens = reg.on_disk()
    console = Console()
    if paths.db.exists():
        with Store.open(paths.db, readonly=True) as store:
            for table in frontier_tables(frontier_steps(store), rows=args.recipes):
                console.print(table)
    if not gens:
        print(f"no generations yet in {paths.models} (run `selfloop cycle --once`)")
        return 0
    cur = reg.current()
    table = Table(title=f"generations in {paths.models}")
    for col in ("gen", "parent", "status", "held-out loss", "text", "chat", "pass@1", "steps", "decision", "created"):
        table.add_column(col)
    for n in gens:
        m = reg.manifest(n)
        metrics = m.get("metrics", {})
        table.add_row(
            f"{'* ' if n == cur else ''}{n}",
            "-" if m.get("parent") is None else str(m["parent"]),
            m.get("status", "?") + (" (rolled back)" if m.get("rolled_back_at") and n != cur else ""),
            _fmt(metrics.get("loss")),
            _fmt(metrics.get("text_loss")),
            _fmt(metrics.get("chat_loss")),
            " ".join(f"{k} {v:.2f}" for k, v in sorted((metrics.get("tasks") or {}).items())) or "-",
            str(m.get("train", {}).get("global_step", "-")),
            str(m.get("gate", {}).get("reason", "-")),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(m.get("created_at", 0))),
        )
    console.print(table)
    print("* = current champion")
    if paths.db.exists():
        with Store.open(paths.db, readonly=True) as store:
            rows = history(store, limit=args.recipes)
        if rows:
            console.print(history_table(rows, title=f"recipe search: the last {len(rows)} recipes (newest last)"))
    return 0


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "-"


def cmd_rollback(args: Any) -> int:
    """`selfloop rollback [--to N]`: point ``current`` back at an earlier promoted generation."""
    _, paths = load_config(args.config)
    with Store.open(paths.db) as store:
        reg = Registry(paths.models, store)
        before = reg.current()
        to = reg.rollback(args.to)
    print(f"current: generation {before} -> {to} (a running daemon reloads it)")
    return 0
