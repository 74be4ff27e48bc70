"""`selfloop models` and `selfloop rollback`: the generations on disk, and moving the champion back.

Kept free of torch/transformers imports: both read manifests and the state store only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from selfloop.cli.output import Console
from selfloop.config import load_config
from selfloop.dashboard import Col, fit_table, frontier_tables, history_table
from selfloop.errors import SelfloopError
from selfloop.model.registry import Registry
from selfloop.store import Store
from selfloop.store.frontier import steps as frontier_steps
from selfloop.store.runs import recipe_history as history
from selfloop.store.status import judge_figures


def cmd_models(args: Any) -> int:
    """`selfloop models`: one row per generation with its figures and gate decision."""
    _, paths = load_config(args.config)
    reg = Registry(paths.models)
    gens = reg.on_disk()
    cur = reg.current()
    manifests = [reg.manifest(n) for n in gens]
    recipes: list[dict[str, Any]] = []
    frontier: list[dict[str, Any]] = []
    judges: list[dict[str, Any]] = []
    if paths.db.exists():
        with Store.open(paths.db, readonly=True) as store:
            recipes = history(store, limit=args.recipes)
            frontier = frontier_steps(store)
            judges = judge_figures(store)
    if args.plot:
        drawn = plot_losses(reg, gens, Path(args.plot))
        print(
            f"wrote {args.plot}: training loss of {drawn} generation(s)", file=sys.stderr if args.json else sys.stdout
        )
        if not args.json:
            return 0
    if args.json:
        out = {
            "models": str(paths.models),
            "current": cur,
            "generations": manifests,
            "recipes": recipes,
            "frontier": frontier,
            "judges": judges,
        }
        print(json.dumps(out, indent=2, default=str))
        return 0
    console = Console()
    for table in frontier_tables(frontier):
        console.print(table)
    if not gens:
        print(f"no generations yet in {paths.models} (run `selfloop cycle --once`)")
        return 0
    cols = [
        Col("gen", justify="right"),
        Col("from", justify="right"),
        Col("status", wrap=True),
        Col("held-out loss", wrap=True),
        Col("text loss", wrap=True, optional=2),
        Col("chat loss", wrap=True, optional=3),
        Col("pass@1", wrap=True),
        Col("steps", justify="right"),
        Col("decision", wrap=True),
        Col("created", optional=4),
    ]
    rows = []
    for n, m in zip(gens, manifests, strict=True):
        metrics = m.get("metrics", {})
        rows.append(
            [
                f"{'* ' if n == cur else ''}{n}",
                "-" if m.get("parent") is None else str(m["parent"]),
                m.get("status", "?") + (" (rolled back)" if m.get("rolled_back_at") and n != cur else ""),
                _fmt(metrics.get("loss")),
                _fmt(metrics.get("text_loss")),
                _fmt(metrics.get("chat_loss")),
                " ".join(f"{k}={v:.2f}" for k, v in sorted((metrics.get("tasks") or {}).items())) or "-",
                str(m.get("train", {}).get("global_step", "-")),
                str(m.get("gate", {}).get("reason", "-")),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(m.get("created_at", 0))),
            ]
        )
    console.print(fit_table(f"generations in {paths.models}", cols, rows, console.width))
    console.print("* = current champion", markup=False)
    if judges:
        console.print(judges_table(judges, console.width))
    if recipes:
        title = f"recipe search: the last {len(recipes)} recipes (newest last)"
        console.print(history_table(recipes, title=title, width=console.width))
    return 0


def judges_table(judges: list[dict[str, Any]], width: int) -> Any:
    """Each judge's verdicts on rework candidates: accept rate and the reasons it rejected for."""
    cols = [
        Col("judge"),
        Col("verdicts", justify="right"),
        Col("accepted", justify="right"),
        Col("rejected for (most first)", wrap=True),
    ]
    rows = [
        [
            j["judge"],
            str(j["verdicts"]),
            f"{j['accepted']} ({j['accept_rate']:.0%})",
            ", ".join(f"{code} {n}" for code, n in j["rejected_by"].items()) or "-",
        ]
        for j in judges
    ]
    return fit_table("judges on rework candidates (all cycles)", cols, rows, width)


def plot_losses(reg: Registry, gens: list[int], path: Path) -> int:
    """A PNG of the training loss by step of each generation that kept its metrics; returns how many it drew."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state; imported only for --plot

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for n in gens:
        rows = [r for r in reg.metrics(n) if isinstance(r.get("loss"), (int, float))]
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f"generation {n}")
            drawn += 1
    if not drawn:
        raise SelfloopError(f"no generation in {reg.dir} kept its training metrics (metrics.jsonl)")
    ax.set(xlabel="step", ylabel="training loss", title="training loss by generation")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return drawn


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
