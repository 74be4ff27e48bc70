"""Project-level commands: `init`, `validate-config`, `status`.

None of these import torch or transformers: they must answer instantly, and
`status` must work while a daemon runs (it opens the store read-only).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from selfloop.config import ProjectPaths, deprecations, load_config
from selfloop.dashboard import current_generation
from selfloop.errors import SelfloopError, UsageError
from selfloop.store import Store, daemon_alive
from selfloop.store import status as views


def starter_root() -> Path:
    """Where the shipped config.toml, starter corpus and sandbox dir live.

    In a wheel they are packaged under ``selfloop/_starter``; in a source checkout
    (editable install) they are the repository's own top-level files.
    """
    packaged = Path(str(resources.files("selfloop"))) / "_starter"
    if (packaged / "config.toml").is_file():
        return packaged
    repo = Path(__file__).resolve().parents[2]
    if (repo / "config.toml").is_file() and (repo / "corpus" / "orig").is_dir():
        return repo
    raise SelfloopError("the starter files (config.toml, corpus/orig) are missing from this installation")


# --------------------------------------------------------------------------- init


def init_project(target: Path, *, starter: bool = True) -> list[Path]:
    """Create config.toml, corpus/orig (+ starter corpus), corpus/rework, the state dir.

    Refuses to overwrite an existing config.toml or a non-empty corpus/orig.
    Returns the paths created.
    """
    target = target.resolve()
    config_path = target / "config.toml"
    if config_path.exists():
        raise UsageError(f"{config_path} already exists; refusing to overwrite it")
    orig = target / "corpus" / "orig"
    if orig.is_dir() and any(orig.iterdir()):
        raise UsageError(f"{orig} is not empty; refusing to overwrite it")
    src = starter_root()
    target.mkdir(parents=True, exist_ok=True)
    created = [config_path]
    shutil.copyfile(src / "config.toml", config_path)
    if starter:
        shutil.copytree(src / "corpus" / "orig", orig, dirs_exist_ok=True)
        # The starter corpus's license notes sit beside orig/, not in it (they are not training data).
        for note in ("README-LICENSES.md", "PSF-LICENSE.txt"):
            if (src / "corpus" / note).is_file():
                shutil.copyfile(src / "corpus" / note, target / "corpus" / note)
    else:
        orig.mkdir(parents=True, exist_ok=True)
    created.append(orig)
    rework = target / "corpus" / "rework"
    rework.mkdir(parents=True, exist_ok=True)
    created.append(rework)
    _, paths = load_config(config_path)
    Store.open(paths.db).close()
    created.append(paths.state)
    return created


def cmd_init(args: Any) -> int:
    created = init_project(Path(args.dir), starter=not args.empty)
    for path in created:
        print(f"created {path}")
    print("next: drop files into corpus/orig/ and run `selfloop run`")
    return 0


# --------------------------------------------------------------------------- validate-config


def cmd_validate_config(args: Any) -> int:
    cfg, _ = load_config(args.path)  # ConfigError prints one line per problem, exit 2
    for line in deprecations(cfg):
        print(f"{args.path}: warning: {line}", file=sys.stderr)
    print(f"OK: {args.path}")
    return 0


# --------------------------------------------------------------------------- status


# The generation fields `status --json` shows, in its order.
_GENERATION = ("id", "parent", "status", "metrics", "gate", "created_at", "decided_at")


def collect_status(paths: ProjectPaths) -> dict[str, Any]:
    """Everything `selfloop status` shows, as plain data (read-only; never blocks the daemon)."""
    alive = daemon_alive(paths.state)
    out: dict[str, Any] = {
        "project": str(paths.root),
        "daemon": {"running": alive is not None, **(alive or {})},
    }
    if not paths.db.exists():
        out["store"] = None
        return out
    with Store.open(paths.db, readonly=True) as store:
        phase = store.get_meta("daemon.phase")
        if alive:
            out["daemon"]["phase"] = phase
        out["documents"] = views.document_counts(store)
        out["quarantined"] = views.quarantined(store)
        out["generations"] = [
            {k: json.loads(r[k]) if k in ("metrics", "gate") else r[k] for k in _GENERATION}
            for r in views.generations(store)
        ]
        out["current_generation"] = current_generation(paths)
        out["last_cycle"] = views.last_cycle(store)
        out["candidates"] = views.candidate_counts(store)
    return out


def cmd_status(args: Any) -> int:
    _, paths = load_config(args.config)
    status = collect_status(paths)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print_status(status)
    return 0


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    secs = max(0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.1f}{unit} ago"
    return f"{secs:.0f}s ago"


def print_status(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    d = status["daemon"]
    if d["running"]:
        console.print(
            f"daemon: [green]running[/] pid {d.get('pid')} since {_ago(d.get('started'))},"
            f" phase {d.get('phase') or '-'}"
        )
    else:
        console.print("daemon: [yellow]not running[/]")
    if status.get("store") is None and "documents" not in status:
        console.print("no state yet: run `selfloop ingest` or `selfloop run`")
        return
    docs = Table(title="documents")
    for col in ("origin", "status", "reason", "count", "chars"):
        docs.add_column(col, justify="right" if col in ("count", "chars") else "left")
    for r in status["documents"]:
        docs.add_row(r["origin"], r["status"], r["reason"] or "", str(r["n"]), str(r["chars"] or 0))
    console.print(docs)
    if status["quarantined"]:
        q = Table(title="quarantined files")
        q.add_column("path")
        q.add_column("reason")
        for r in status["quarantined"]:
            q.add_row(r["path"], r["reason"] or "")
        console.print(q)
    if status["candidates"]:
        c = Table(title="rework candidates")
        for col in ("status", "reason", "count"):
            c.add_column(col)
        for r in status["candidates"]:
            c.add_row(r["status"], r["reason"], str(r["n"]))
        console.print(c)
    g = Table(title=f"generations (current: {status['current_generation']})")
    for col in ("gen", "parent", "status", "held-out loss", "gate"):
        g.add_column(col)
    for r in status["generations"]:
        loss = r["metrics"].get("loss")
        g.add_row(
            str(r["id"]),
            str(r["parent"]),
            r["status"],
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            r["gate"].get("reason", ""),
        )
    console.print(g)
    last = status["last_cycle"]
    if last:
        console.print(
            f"last cycle: #{last['id']} {last['status']} at phase {last['phase']} (started {_ago(last['started_at'])})"
            + (f" error: {last['error']}" if last.get("error") else "")
        )
