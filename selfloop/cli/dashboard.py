"""`selfloop dashboard`: a read-only live view attached to a project's state store."""

from __future__ import annotations

from typing import Any

from selfloop.cli.output import Console
from selfloop.config import load_config
from selfloop.dashboard import live
from selfloop.store import daemon_alive


def cmd_dashboard(args: Any) -> int:
    cfg, paths = load_config(args.config)
    console = Console()
    if daemon_alive(paths.state) is None:
        console.print(
            f"[yellow]no selfloop daemon is running on {paths.state}[/]; showing the last recorded state "
            "(start one with `selfloop run`). Ctrl-C to quit."
        )
    try:
        live(paths, cfg.dashboard, console=console)
    except KeyboardInterrupt:
        pass
    return 0
