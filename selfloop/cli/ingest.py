"""`selfloop ingest`: one scan of orig/ and rework/, and a table of what it did.

Kept free of torch/transformers imports so it starts fast.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from selfloop.cli.output import Console
from selfloop.config import load_config
from selfloop.errors import SelfloopError
from selfloop.ingest.ingestor import Ingestor
from selfloop.store import Store, daemon_alive
from selfloop.store.corpus import quarantined_files, status_counts


def cmd_ingest(args: Any) -> int:
    """`selfloop ingest`: scan once and print what was accepted, dropped (by reason) and quarantined."""
    cfg, paths = load_config(args.config)
    if daemon_alive(paths.state):
        raise SelfloopError(f"a selfloop daemon is running on {paths.state}; it ingests changes itself")
    with Store.open(paths.db) as store:
        report = Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
        totals = status_counts(store)
        quarantined = quarantined_files(store)

    console = Console()
    table = Table(title="selfloop ingest", show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("files seen", str(report.files))
    table.add_row("  ingested (new or changed)", str(report.ingested))
    table.add_row("  unchanged", str(report.unchanged))
    table.add_row("  removed (deleted)", str(report.removed))
    table.add_row("  quarantined now", str(len(report.quarantined)))
    table.add_row("documents accepted", str(report.accepted))
    for code, n in sorted(report.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  dropped: {code}", str(n))
    table.add_row("corpus: active documents", str(totals.get("active", 0)))
    console.print(table)
    if quarantined:
        qt = Table(title="quarantined files", show_header=True)
        qt.add_column("file")
        qt.add_column("reason")
        for row in quarantined:
            qt.add_row(row["path"], row["reason"] or "")
        console.print(qt)
    return 0
