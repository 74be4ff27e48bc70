"""`selfloop judge check | eval`: the project's text and chat judges on a JSONL file of items.

Each line is ``{"kind": "text"|"chat", "prompt": ..., "a": ... or null, "b": ...}``; ``eval`` also wants
``"label": "good"|"bad"`` and reads ``"why"`` when present. The judges are the project's ``[judge]`` pipelines with
its reference and the calibration of the document rules on its orig/ (both from the state dir, built when missing;
orig/ is ingested first unless the daemon runs and does it itself).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from selfloop.config import load_config
from selfloop.errors import UsageError
from selfloop.ingest.ingestor import Ingestor
from selfloop.judge import JudgeContext, Pipeline
from selfloop.judge.evaluate import Item, evaluate, judge_items, parse_items
from selfloop.judge.reference import text_resources
from selfloop.store import Store, daemon_alive


def _items(path: str, *, labelled: bool) -> list[Item]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {e}") from None
    items = parse_items(text.splitlines(), where=path, labelled=labelled)
    if not items:
        raise UsageError(f"{path}: no items")
    return items


def _pipeline(args: argparse.Namespace, items: list[Item]) -> Pipeline:
    cfg, paths = load_config(args.config)
    kinds = sorted({i.kind for i in items})
    paths.state.mkdir(parents=True, exist_ok=True)
    with Store.open(paths.db) as store:
        ingestor = Ingestor(cfg.ingest, cfg.watch, paths, store)
        if not daemon_alive(paths.state):
            ingestor.scan()
        resources = text_resources(cfg.judge, paths, store, kinds)
    # Dedup against the corpus reads the store: a read-only connection that stays open while judging.
    store = Store.open(paths.db, readonly=True)
    resources.update(corpus=Ingestor(cfg.ingest, cfg.watch, paths, store), ingest_config=cfg.ingest)
    return Pipeline(JudgeContext(cfg.judge, resources=resources), kinds=kinds)


def cmd_check(args: argparse.Namespace) -> int:
    """One verdict per line: status, then each judge's status, score and reason. Exit 0 even when rejected."""
    items = _items(args.file, labelled=False)
    outcomes = judge_items(_pipeline(args, items), items)
    rows = [
        {
            "line": n,
            "status": "accept" if o.accepted else "reject",
            "reason": o.reason,
            "verdicts": [
                {"judge": v.judge, "status": v.status, "score": v.score, "reason": v.reason} for v in o.verdicts
            ],
        }
        for n, o in enumerate(outcomes, 1)
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['line']}: {r['status']}  {r['reason']}")
        for v in r["verdicts"]:
            score = "" if v["score"] is None else f" ({v['score']:.4g})"
            print(f"    {v['judge']}: {v['status']}{score} {v['reason']}")
    return 0


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def cmd_eval(args: argparse.Namespace) -> int:
    """Precision, recall and F1 per judge and for the pipeline; accept rate per ``why``."""
    from rich.table import Table

    from selfloop.cli.output import Console

    items = _items(args.file, labelled=True)
    report = evaluate(_pipeline(args, items), items).as_dict()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    console = Console()
    table = Table(title=f"judge eval: {args.file} ({report['items']} items; accepted = positive)")
    for col in ("judge", "precision", "recall", "F1", "good accepted", "bad accepted"):
        table.add_column(col, justify="left" if col == "judge" else "right")
    for name, c in [("pipeline", report["pipeline"]), *report["judges"].items()]:
        table.add_row(
            name, _pct(c["precision"]), _pct(c["recall"]), _pct(c["f1"]), c["good_accepted"], c["bad_accepted"]
        )
    console.print(table)
    if report["accept_rate_by_why"]:
        why = Table(title="pipeline accept rate by why")
        for col in ("label", "why", "accepted", "rate"):
            why.add_column(col, justify="right" if col in ("accepted", "rate") else "left")
        for r in report["accept_rate_by_why"]:
            why.add_row(r["label"], r["why"], f"{r['accepted']}/{r['total']}", _pct(r["rate"]))
        console.print(why)
    return 0
