"""The live terminal dashboard.

Three layers, each testable alone: ``snapshot`` reads the state store (read-only, never blocks the daemon),
``render`` turns it into a rich renderable (pure), ``live`` refreshes it with ``rich.live.Live``. The daemon
publishes its state through the store, so a dashboard in another terminal sees what ``selfloop run`` shows. Charts
are plotext's ANSI text; nothing is hand-drawn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from selfloop.config import DashboardConfig, ProjectPaths
from selfloop.errors import SelfloopError
from selfloop.model.registry import Registry
from selfloop.store import Store, daemon_alive
from selfloop.store import status as views
from selfloop.store.frontier import steps as frontier_steps
from selfloop.store.runs import recipe_history


@dataclass
class Snapshot:
    daemon: dict[str, Any] | None  # pid info when alive
    meta: dict[str, str] = field(default_factory=dict)
    progress: list[dict[str, Any]] = field(default_factory=list)
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    curve_generation: int | None = None
    generations: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[tuple[str, str, int]] = field(default_factory=list)  # status, reason, count
    judges: list[dict[str, Any]] = field(default_factory=list)  # per judge: verdicts, accept rate, reasons
    corpus: dict[str, Any] = field(default_factory=dict)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    recipes: list[dict[str, Any]] = field(default_factory=list)  # recipe search history, oldest first
    current: int | None = None  # the champion's generation
    frontier: list[dict[str, Any]] = field(default_factory=list)  # frontier steps of every family, oldest first
    taken_at: float = field(default_factory=time.time)


def snapshot(store: Store | None, paths: ProjectPaths, cfg: DashboardConfig | None = None) -> Snapshot:
    """Everything the dashboard shows, read in one pass (a handful of indexed queries).

    The daemon publishes what it is doing through the store (``daemon.*`` and
    ``progress.*`` meta keys, ``train_metrics``, ``events``). The recipe search table and
    the champion's number are shared with ``selfloop models`` and ``selfloop status``.
    """
    cfg = cfg or DashboardConfig()
    snap = Snapshot(daemon=daemon_alive(paths.state))
    if store is None:
        return snap
    snap.meta = views.meta(store)
    cycle = views.running_cycle(store)
    if cycle is not None:
        snap.meta.setdefault("daemon.phase", cycle["phase"])
    snap.progress = _progress_of(store, snap.meta, cycle)
    gen = views.last_trained_generation(store)
    if gen is not None:
        snap.curve_generation = gen
        rows = _last_run(views.losses(store, gen))
        snap.train_curve = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
        snap.eval_curve = [(r["step"], r["loss"]) for r in rows if r["kind"] == "eval"]
    for r in views.generations(store):
        snap.generations.append(
            {
                "id": r["id"],
                "parent": r["parent"],
                "path": r["path"],
                "status": r["status"],
                "metrics": _json(r["metrics"]),
                "gate": _json(r["gate"]),
            }
        )
    snap.verdicts = [(r[0], r[1] or "", r[2]) for r in views.verdict_counts(store)]
    snap.judges = views.judge_figures(store)
    for r in views.corpus_counts(store):
        snap.corpus[f"{r['origin']}.{r['status']}"] = {"n": r["n"], "chars": r["chars"]}
    snap.quarantined = [(r[0], r[1] or "") for r in views.recent_quarantined(store)]
    snap.events = [(r["ts"], r["kind"], r["message"]) for r in store.recent_events(cfg.recent_events)]
    snap.recipes = recipe_history(store, limit=8)
    snap.frontier = frontier_steps(store, limit=200)
    snap.current = current_generation(paths)
    champion = [g for g in snap.generations if g["id"] == snap.current]
    if champion and cfg.samples:
        snap.samples = _samples(champion[0]["path"])[: cfg.samples]
    return snap


def current_generation(paths: ProjectPaths) -> int | None:
    """The champion's number from the registry's pointer; None before generation 0 or if unreadable."""
    try:
        return Registry(paths.models).current()
    except SelfloopError:
        return None


def _last_run(rows: list[Any]) -> list[Any]:
    """The rows of the newest training run of a generation: recipe search trains several, each from step 1 again."""
    start, last = 0, None
    for i, r in enumerate(rows):
        if r["kind"] == "train":
            if last is not None and r["step"] < last:
                start = i
            last = r["step"]
    return sorted(rows[start:], key=lambda r: r["step"])


def _progress_of(store: Store, meta: dict[str, str], cycle: Any) -> list[dict[str, Any]]:
    """Progress bars: what a long step publishes itself (ingest, rework, frontier), and what the running
    cycle's rows say (verdicts judged, training steps)."""
    bars: list[dict[str, Any]] = []
    for name in ("ingest", "rework", "frontier"):
        try:
            bars.append({"name": name, **json.loads(meta[f"progress.{name}"])})
        except (KeyError, ValueError, TypeError):
            pass
    if cycle is None:
        return bars
    cycle_id, generation, phase = cycle["id"], cycle["generation"], cycle["phase"]
    counts = views.cycle_candidate_counts(store, cycle_id)
    total = sum(counts.values())
    if total:
        bars.append(
            {"name": "verdicts", "done": total - counts.get("pending", 0), "total": total, "unit": "candidates"}
        )
    row = views.last_train_step(store, generation)
    if phase == "train" or row is not None:
        steps = int(meta.get("train.total_steps", 0) or 0)
        bars.append(
            {
                "name": "train",
                "done": row["step"] if row else 0,
                "total": steps,
                "unit": "steps",
                "rate": row["tokens_per_s"] if row else None,
                "rate_unit": "tok/s",
                "eta_s": row["eta_s"] if row else None,
            }
        )
    return bars


def _samples(path: str) -> list[str]:
    """Sample generations kept in a generation's manifest (prompt -> completion)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [
        f"{s.get('prompt', '')!r} -> {s.get('completion', '')!r}"
        for s in manifest.get("samples", [])
        if isinstance(s, dict)
    ]


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- rendering


def _duration(secs: float | None) -> str:
    if secs is None or secs < 0:
        return "-"
    secs = int(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _header(snap: Snapshot) -> RenderableType:
    meta = snap.meta
    if snap.daemon:
        started = snap.daemon.get("started")
        up = _duration(snap.taken_at - started if started else None)
        state = f"[green]running[/] pid {snap.daemon.get('pid')} up {up}"
    else:
        state = "[yellow]no daemon running[/] (showing the last recorded state)"
    current = "-" if snap.current is None else str(snap.current)
    line = Text.from_markup(
        f"selfloop  {state}  |  state [bold]{meta.get('daemon.state', '-')}[/]"
        f"  phase [bold]{meta.get('daemon.phase', '-')}[/]"
        f"  |  generation [bold]{current}[/]  |  sandbox {meta.get('sandbox.backend', '-')}"
        f"  |  model {meta.get('model.summary', '-')}"
    )
    return line


def _progress(snap: Snapshot, width: int) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(width=10)
    table.add_column(width=max(10, width // 3))
    table.add_column()
    if not snap.progress:
        table.add_row("progress", Text("idle", style="dim"), "")
    for p in snap.progress:
        total = p.get("total") or 0
        done = p.get("done") or 0
        extra = [p["what"]] if p.get("what") else []
        if p.get("rate"):
            extra.append(f"{p['rate']:.1f} {p.get('rate_unit', '/s')}")
        if p.get("eta_s") is not None:
            extra.append(f"ETA {_duration(p['eta_s'])}")
        table.add_row(
            p["name"],
            ProgressBar(total=max(total, 1), completed=min(done, total) if total else 0),
            f"{done}/{total} {p.get('unit', '')}  " + "  ".join(extra),
        )
    return table


def _plot(series: list[tuple[str, list[tuple[float, float]]]], title: str, width: int, height: int) -> RenderableType:
    """A line chart drawn by plotext (its figure is a module-level singleton: one renderer thread)."""
    import plotext

    if not any(points for _, points in series):
        return Panel(Text("no data yet", style="dim"), title=title, height=height, width=width)
    fig = plotext.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("simple")
    fig.title(title)
    for label, points in series:
        if points:
            xs, ys = zip(*points)
            fig.draw(fig.signal(list(xs), list(ys), marker="braille").lines().label(label))
    return Text.from_ansi(fig.build().string())


def _generations(snap: Snapshot) -> RenderableType:
    t = Table(title="generations", expand=True)
    for col in ("gen", "held-out loss", "pass@1", "status", "gate reason"):
        t.add_column(col, overflow="fold")
    for g in snap.generations[-8:]:
        m = g["metrics"]
        loss = m.get("loss")
        pass1 = m.get("tasks") or {}
        pass_text = " ".join(f"{k}={v:.2f}" for k, v in pass1.items() if isinstance(v, (int, float))) or "-"
        style = {"promoted": "green", "rejected": "red", "training": "yellow"}.get(g["status"], "")
        t.add_row(
            str(g["id"]),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            pass_text,
            Text(g["status"], style=style),
            str(g["gate"].get("reason", "")),
        )
    return t


def _verdicts(snap: Snapshot) -> RenderableType:
    t = Table(title="candidates by verdict", expand=True)
    t.add_column("verdict")
    t.add_column("reason", overflow="fold")
    t.add_column("n", justify="right")
    for status, reason, n in snap.verdicts:
        t.add_row(Text(status, style="green" if status == "accepted" else "red"), reason, str(n))
    if not snap.judges:
        return t
    j = Table(title="judges", expand=True)
    j.add_column("judge")
    j.add_column("accepted", justify="right")
    j.add_column("rejected for", overflow="fold")
    for fig in snap.judges:
        reasons = ", ".join(f"{code} {n}" for code, n in list(fig["rejected_by"].items())[:3])
        j.add_row(fig["judge"], f"{fig['accepted']}/{fig['verdicts']} ({fig['accept_rate']:.0%})", reasons or "-")
    return Group(t, j)


def _corpus(snap: Snapshot) -> RenderableType:
    t = Table(title="corpus", expand=True)
    t.add_column("what")
    t.add_column("docs", justify="right")
    t.add_column("chars", justify="right")
    for key in sorted(snap.corpus):
        t.add_row(key, str(snap.corpus[key]["n"]), f"{snap.corpus[key]['chars']:,}")
    if not snap.quarantined:
        return t
    q = Table(title="quarantined files", expand=True)
    q.add_column("file", overflow="fold", style="red")
    q.add_column("reason", overflow="fold")
    for path, reason in snap.quarantined:
        q.add_row(path, reason)
    return Group(t, q)


def _events(snap: Snapshot) -> RenderableType:
    t = Table(title="recent events", expand=True)
    t.add_column("time", width=8)
    t.add_column("kind", width=12)
    t.add_column("message", overflow="fold")
    for ts, kind, message in snap.events:
        t.add_row(time.strftime("%H:%M:%S", time.localtime(ts)), kind, message)
    return t


def frontier_tables(steps: list[dict[str, Any]], rows: int = 8) -> list[Table]:
    """Per family: test accuracy by level of each promoted generation, and the labels that made it.

    "new data" counts the kept labels by source (self, tool, oracle) of every round since the previous promotion (a
    rejected round's labels join the next try's mixture); "audited" is the answer key's share right of those labels,
    recorded but never used to select them.
    """
    tables = []
    for family in sorted({s["family"] for s in steps}):
        mine = [s for s in steps if s["family"] == family]
        gens, pending = [], {"kept": {}, "right": 0.0, "n": 0}
        for s in mine:
            labels = s.get("labels") or {}
            if labels.get("kept"):
                by = pending["kept"]
                for source, n in (s.get("kept_by_source") or {labels["source"]: labels["kept"]}).items():
                    by[source] = by.get(source, 0) + n
                pending["right"] += (labels.get("audited_label_accuracy") or 0) * labels["kept"]
                pending["n"] += labels["kept"]
            if s["promoted"]:
                gens.append((s, pending))
                pending = {"kept": {}, "right": 0.0, "n": 0}
        levels = sorted({int(lv) for s, _ in gens for lv in (s.get("accuracy_by_level") or {})})
        t = Table(title=f"frontier: {family} (test accuracy by level)", expand=True)
        t.add_column("gen", justify="right")
        t.add_column("level", justify="right")
        for lv in levels:
            t.add_column(str(lv), justify="right")
        t.add_column("new data", overflow="fold")
        t.add_column("audited", justify="right")
        for s, data in gens[-rows:]:
            acc = {int(k): v for k, v in (s.get("accuracy_by_level") or {}).items()}
            cells = [
                Text(f"{acc[lv]:.2f}", style="green" if acc[lv] >= 0.9 else "yellow" if acc[lv] >= 0.3 else "red")
                if lv in acc
                else Text("")
                for lv in levels
            ]
            kept = " ".join(f"{src} {n}" for src, n in sorted(data["kept"].items())) or "generator labels"
            audited = f"{data['right'] / data['n']:.2f}" if data["n"] else "-"
            t.add_row(str(s["generation"]), str((s.get("frontier") or {}).get("level", "-")), *cells, kept, audited)
        last = mine[-1]
        if last["kind"] == "round":
            outcome = "promoted" if last["promoted"] else "kept the champion"
            t.caption = f"last: round {last['round']} at level {last['level']}: {outcome}: {last['reason']}"
        tables.append(t)
    return tables


@dataclass(frozen=True)
class Col:
    """A column of ``fit_table``."""

    header: str
    wrap: bool = False  # cells wrap at spaces; else each stays whole on one line
    fold: bool = False  # cells may also be cut anywhere (paths)
    optional: int = 0  # left out when the table does not fit, the highest first; 0: always shown
    justify: str = "left"


def fit_table(title: str, cols: list[Col], rows: list[list[str | Text]], width: int | None = None) -> Table:
    """A Table that fits ``width`` terminal columns where it can: whole numbers and dates, wrapped words.

    Optional columns are left out (the highest first) while the unbreakable parts do not fit: the cells of the
    columns that do not wrap, the longest word of those that do (16 characters of a folding one); the wrapping
    columns share what is left in proportion to their width. ``width`` None: rich's own layout.
    """
    rows = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    shown = list(range(len(cols)))

    def need(i: int, whole: bool) -> int:
        cells = [cols[i].header, *(row[i].plain for row in rows)]
        longest = max(cell_len(part) for c in cells for part in (c.splitlines() if whole else c.split()) or [""])
        return longest if whole or not cols[i].fold else min(longest, 16)

    widths: dict[int, int] = {}
    while width is not None:
        room = width - 3 * len(shown) - 1  # the borders, and one space each side of every cell
        wrapping = [i for i in shown if cols[i].wrap or cols[i].fold]
        fixed = sum(need(i, True) for i in shown if i not in wrapping)
        low, high = {i: need(i, False) for i in wrapping}, {i: need(i, True) for i in wrapping}
        if fixed + sum(high.values()) <= room:
            break
        if fixed + sum(low.values()) <= room:
            spare, slack = room - fixed - sum(low.values()), sum(high[i] - low[i] for i in wrapping)
            widths = {i: low[i] + (spare * (high[i] - low[i])) // slack for i in wrapping}
            break
        droppable = [i for i in shown if cols[i].optional]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: cols[i].optional))
    table = Table(title=title)
    for i in shown:
        c = cols[i]
        table.add_column(
            c.header,
            justify=c.justify,
            no_wrap=not (c.wrap or c.fold),
            overflow="fold" if c.fold else "ellipsis",
            width=widths.get(i),
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def history_table(rows: list[dict[str, Any]], title: str = "recipe search", width: int | None = None) -> Table:
    """A rich Table of recipe rows: cycle, generation, values, figures, outcome."""
    cols = [
        Col("cycle", justify="right", optional=2),
        Col("gen", justify="right"),
        Col("#", wrap=True),
        Col("lr"),
        Col("steps", justify="right"),
        Col("rework share", wrap=True, optional=1),
        Col("held-out loss", wrap=True),
        Col("pass@1", wrap=True),
        Col("outcome", wrap=True),
    ]
    cells = []
    for r in rows:
        p, f = r["params"], r["figures"]
        tasks = f.get("tasks") or {}
        outcome = ("promoted" if r["promoted"] else "chosen") if r["chosen"] else ""
        cells.append(
            [
                str(r["cycle_id"]),
                str(r["generation"]),
                str(r["idx"]) + (" (incumbent)" if r["idx"] == 0 else ""),
                f"{p.get('learning_rate', 0):.2e}",
                str(p.get("max_steps", "-")),
                f"{p.get('rework_max_share', 0):.2f}",
                f"{f['loss']:.4f}" if isinstance(f.get("loss"), (int, float)) else "-",
                " ".join(f"{k}={v:.2f}" for k, v in sorted(tasks.items())) or "-",
                outcome or (r["decision"] or "")[:60],
            ]
        )
    return fit_table(title, cols, cells, width)


def render(snap: Snapshot, width: int = 120) -> RenderableType:
    """The whole dashboard for one snapshot (pure: no I/O)."""
    gens = [g for g in snap.generations if isinstance(g["metrics"].get("loss"), (int, float))]
    families = sorted({f for g in snap.generations for f in (g["metrics"].get("tasks") or {})})
    specs = [
        (
            [("train", snap.train_curve), ("eval", snap.eval_curve)],
            f"loss, generation {snap.curve_generation if snap.curve_generation is not None else '-'}",
        ),
        ([("held-out loss", [(g["id"], g["metrics"]["loss"]) for g in gens])], "held-out loss by generation"),
    ]
    if families:
        specs.append(
            (
                [
                    (
                        fam,
                        [
                            (g["id"], g["metrics"]["tasks"][fam])
                            for g in snap.generations
                            if isinstance((g["metrics"].get("tasks") or {}).get(fam), (int, float))
                        ],
                    )
                    for fam in families
                ],
                "pass@1 by generation",
            )
        )
    each = max(30, width // len(specs) - 1)
    plots = Table.grid(expand=True)
    for _ in specs:
        plots.add_column()
    plots.add_row(*[_plot(series, title, each, 12) for series, title in specs])
    mid = Table.grid(expand=True)
    mid.add_column(ratio=3)
    mid.add_column(ratio=2)
    mid.add_row(_generations(snap), _verdicts(snap))
    low = Table.grid(expand=True)
    low.add_column(ratio=2)
    low.add_column(ratio=3)
    low.add_row(_corpus(snap), _events(snap))
    parts: list[RenderableType] = [_header(snap), _progress(snap, width), plots, mid, low]
    if snap.recipes:
        parts.insert(4, history_table(snap.recipes, title="recipe search (newest last)"))
    if snap.frontier:
        parts[3:3] = frontier_tables(snap.frontier)
    if snap.samples:
        parts.append(
            Panel(Text("\n".join(s.replace("\n", " ⏎ ")[: width - 6] for s in snap.samples)), title="latest samples")
        )
    return Group(*parts)


# --------------------------------------------------------------------------- live


def live(paths: ProjectPaths, cfg: DashboardConfig, *, stop: Any = None, console: Any = None) -> None:
    """Refresh the dashboard until ``stop()`` is true (or Ctrl-C). Never writes to the store."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    store: Store | None = None
    with Live(console=console, refresh_per_second=cfg.refresh_per_second, screen=False) as view:
        while not (stop and stop()):
            if store is None and paths.db.exists():
                store = Store.open(paths.db, readonly=True)
            view.update(render(snapshot(store, paths, cfg), console.width))
            time.sleep(1.0 / cfg.refresh_per_second)
    if store is not None:
        store.close()
