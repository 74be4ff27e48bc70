"""`selfloop cycle --once`: one whole cycle in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfloop.config import load_config
from selfloop.loop.cycle import run_cycle
from selfloop.store import DaemonLock, Store


def cmd_cycle(args: Any) -> int:
    """`selfloop cycle --once`: run (or resume) exactly one cycle, printing its phases and the gate decision."""
    cfg, paths = load_config(args.config)
    with DaemonLock(paths.state), Store.open(paths.db) as store:
        detail = run_cycle(cfg, paths, store, config_path=Path(args.config), log=lambda m: print(m, flush=True))
    gate = detail["phases"]["gate"]["out"]
    print(f"cycle done: {'promoted' if gate['promote'] else 'rejected'} — {gate['reason']}")
    return 0
