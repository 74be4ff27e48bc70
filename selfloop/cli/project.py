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

from selfloop.config import FrontierConfig, JudgeConfig, ProjectPaths, deprecations, load_config
from selfloop.dashboard import Col, current_generation, fit_table
from selfloop.errors import ConfigError, SelfloopError, UsageError
from selfloop.frontier.families import load_family
from selfloop.frontier.family import writes_programs
from selfloop.store import Store, daemon_alive
from selfloop.store import status as views


def starter_root() -> Path:
    """Where the shipped config.toml and sandbox dir live.

    In a wheel they are packaged under ``selfloop/_starter``; in a source checkout
    (editable install) they are the repository's own top-level files.
    """
    packaged = Path(str(resources.files("selfloop"))) / "_starter"
    if (packaged / "config.toml").is_file():
        return packaged
    repo = Path(__file__).resolve().parents[2]
    if (repo / "config.toml").is_file():
        return repo
    raise SelfloopError("the shipped config.toml is missing from this installation")


def starter_corpus() -> Path:
    """The starter corpus: ``orig/`` and, beside it, its license notes.

    Package data (``selfloop/starter/corpus``), in a wheel as in a checkout: never the
    checkout's ``corpus/orig``, which holds whatever its user dropped there.
    """
    return Path(str(resources.files("selfloop"))) / "starter" / "corpus"


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
    target.mkdir(parents=True, exist_ok=True)
    created = [config_path]
    shutil.copyfile(starter_root() / "config.toml", config_path)
    if starter:
        corpus = starter_corpus()
        shutil.copytree(corpus / "orig", orig, dirs_exist_ok=True)
        # The starter corpus's license notes sit beside orig/, not in it (they are not training data).
        for note in ("README-LICENSES.md", "PSF-LICENSE.txt"):
            shutil.copyfile(corpus / note, target / "corpus" / note)
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
    path = args.path or args.config
    cfg, _ = load_config(path)  # ConfigError prints one line per problem, exit 2
    for line in deprecations(cfg):
        print(f"{path}: warning: {line}", file=sys.stderr)
    if cfg.frontier.enabled:
        for line in _frontier_problems(cfg.frontier):
            print(f"{path}: warning: {line}", file=sys.stderr)
    if cfg.model.base != "scratch":
        from selfloop.model.base import describe_base  # imports transformers: only for a pretrained base

        # A base that does not exist or whose config does not load is an error here, not at the first cycle.
        try:
            print(f"model.base: {describe_base(cfg.model.base, Path(path).resolve().parent)}")
        except SelfloopError as e:
            raise ConfigError(str(e)) from None
    print(f"OK: {path}")
    return 0


def _frontier_problems(cfg: FrontierConfig) -> list[str]:
    """What the frontier families will not do as configured; a plugin that does not import is a ConfigError."""
    found, names = [], set()
    for spec in cfg.families:
        family = load_family(spec)
        names.add(family.name)
        sources = cfg.family_sources.get(family.name, cfg.label_sources)
        if "tool" in sources and not (writes_programs(family) and cfg.program_share > 0):
            why = "program_share is 0" if cfg.program_share == 0 else "it writes no programs (README, Writing a family)"
            if set(sources) == {"tool"}:
                raise ConfigError(f"frontier family {family.name}: tool is its only label source, but {why}")
            found.append(f"frontier family {family.name}: no tool labels: {why}")
    unknown = [n for n in cfg.family_sources if n not in names]
    return found + [f"frontier.family_sources.{n}: no family of that name in frontier.families" for n in unknown]


# --------------------------------------------------------------------------- status


# The generation fields `status --json` shows, in its order.
_GENERATION = ("id", "parent", "status", "metrics", "gate", "created_at", "decided_at")


def collect_status(paths: ProjectPaths, judge: JudgeConfig | None = None) -> dict[str, Any]:
    """Everything `selfloop status` shows, as plain data (read-only; never blocks the daemon). With ``judge``, also
    the document rules that the calibration on orig/ leaves off (measured once per orig/, cached in the state dir)."""
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
        last = views.last_cycle(store)
        out["last_cycle"] = last and {**last, "detail": json.loads(last["detail"] or "{}")}
        out["candidates"] = views.candidate_counts(store)
        if judge is not None and ({"doc_quality", "a_vs_b"} & {*judge.text, *judge.chat}):
            out["doc_rules"] = doc_rules_status(judge, paths, store)
    return out


def doc_rules_status(judge: JudgeConfig, paths: ProjectPaths, store: Store) -> dict[str, Any]:
    """The document rules that would drop more than ``judge.doc_rules_max_orig_drop`` of orig/, per kind."""
    from selfloop.judge.doc_rules import load_calibration

    cal = load_calibration(judge, paths, store)
    return {
        "max_orig_drop": judge.doc_rules_max_orig_drop,
        "documents": cal.documents,
        "off": [{"kind": k, "rule": r, "orig_drop": share} for k, r, share in cal.too_strict()],
    }


def collect_files(paths: ProjectPaths) -> list[dict[str, Any]]:
    """`selfloop status --files`: every file's outcome, as plain data (read-only)."""
    if not paths.db.exists():
        return []
    with Store.open(paths.db, readonly=True) as store:
        return views.file_outcomes(store)


def cmd_status(args: Any) -> int:
    cfg, paths = load_config(args.config)
    if args.files:
        files = collect_files(paths)
        if args.json:
            print(json.dumps(files, indent=2))
        else:
            print_files(files)
        return 0
    status = collect_status(paths, cfg.judge)
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
    from selfloop.cli.output import Console

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
    width = console.width
    docs = [Col("origin"), Col("status"), Col("reason"), Col("count", justify="right"), Col("chars", justify="right")]
    rows = [[r["origin"], r["status"], r["reason"], str(r["n"]), str(r["chars"] or 0)] for r in status["documents"]]
    console.print(fit_table("documents", docs, rows, width))
    if status["quarantined"]:
        rows = [[r["path"], r["reason"] or ""] for r in status["quarantined"]]
        console.print(fit_table("quarantined files", [Col("path", fold=True), Col("reason", wrap=True)], rows, width))
    if status["candidates"]:
        cols = [Col("status"), Col("reason", wrap=True), Col("count", justify="right")]
        rows = [[r["status"], r["reason"], str(r["n"])] for r in status["candidates"]]
        console.print(fit_table("rework candidates", cols, rows, width))
    cols = [
        Col("gen", justify="right"),
        Col("parent", justify="right"),
        Col("status"),
        Col("held-out loss", wrap=True),
        Col("gate", wrap=True),
    ]
    rows = [
        [str(r["id"]), str(r["parent"]), r["status"], _loss(r["metrics"].get("loss")), r["gate"].get("reason", "")]
        for r in status["generations"]
    ]
    console.print(fit_table(f"generations (current: {status['current_generation']})", cols, rows, width))
    rules = status.get("doc_rules")
    if rules and rules["off"]:
        cols = [Col("kind"), Col("rule"), Col("orig/ dropped", justify="right")]
        rows = [[r["kind"], r["rule"], f"{r['orig_drop']:.1%}"] for r in rules["off"]]
        title = f"doc rules left off for rework (they would drop more than {rules['max_orig_drop']:.0%} of orig/)"
        console.print(fit_table(title, cols, rows, width))
    last = status["last_cycle"]
    if last:
        console.print(
            f"last cycle: #{last['id']} {last['status']} at phase {last['phase']} (started {_ago(last['started_at'])})"
            + (f" error: {last['error']}" if last.get("error") else ""),
            markup=False,
        )


def _loss(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "-"


def _dropped_text(f: dict[str, Any]) -> str:
    """A file's dropped documents by reason code: ``invalid_json 2 (lines 4, 7), exact_duplicate 1``."""
    parts = []
    for code, n in sorted(f["dropped"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines = f["lines"].get(code)
        where = f" (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))})" if lines else ""
        parts.append(f"{code} {n}{where}")
    return ", ".join(parts)


def print_files(files: list[dict[str, Any]]) -> None:
    from rich.text import Text

    from selfloop.cli.output import Console

    console = Console()
    if not files:
        console.print("no files yet: run `selfloop ingest` or `selfloop run`")
        return
    cols = [Col("file", fold=True), Col("accepted", justify="right"), Col("dropped or quarantined", wrap=True)]
    rows = []
    for f in files:
        if f["status"] == "quarantined":
            why = Text.assemble(("quarantined", "yellow"), f": {f['reason']}")
        else:
            why = Text(_dropped_text(f))
        rows.append([f["path"], str(f["accepted"]), why])
    console.print(fit_table("files", cols, rows, console.width))
