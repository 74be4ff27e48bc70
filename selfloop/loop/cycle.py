"""One improvement cycle as a resumable state machine over named phases.

Phases run in order: ``ingest -> rework -> judge -> train -> evaluate -> gate ->
promote``. Every phase is a function ``(CycleContext) -> dict`` whose
returned dict is persisted as that phase's output, so later phases (and a resumed
run) read it back instead of recomputing.

The ``cycles`` row records each phase before it runs (``running``) and after
(``done`` with its output) in ``detail["phases"]``. A cycle left ``running`` (a
crash, kill -9) or ``interrupted`` (SIGTERM, Ctrl-C) is resumed by the next
``run_cycle`` at its first phase that is not done; the train phase then resumes
from its Trainer checkpoint and its data snapshot, so nothing restarts from zero.
A ``failed`` cycle is not retried: the next call starts a fresh cycle.

Generation 0 is trained from scratch (or from the local base model) when there
is no champion yet.

Does not cover: scheduling and watching (``selfloop.loop.daemon``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfloop.config import Config, ProjectPaths
from selfloop.errors import SelfloopError
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry, gen_name
from selfloop.store import Store
from selfloop.train.launch import TrainingInterrupted

Log = Callable[[str], None]


class CycleInterrupted(SelfloopError):
    """The cycle stopped at a phase boundary because a stop was requested; it resumes next time."""


@dataclass
class CycleContext:
    cfg: Config
    paths: ProjectPaths
    store: Store
    config_path: Path
    registry: Registry
    cycle_id: int
    generation: int  # the challenger this cycle trains
    detail: dict[str, Any]
    task_suite: Callable[[Any, Any], dict[str, float]] | None = None
    log: Log = field(default=lambda msg: None)
    should_stop: Callable[[], bool] = field(default=lambda: False)
    # The daemon's long-lived champion (hot-reloaded after a promotion) and warm
    # sandbox; `selfloop cycle --once` gets fresh ones for the cycle.
    holder: ModelHolder | None = None
    sandbox: Any = None
    _own_holder: ModelHolder | None = field(default=None, repr=False)

    def model_source(self) -> AbstractContextManager[Any]:
        """The champion for a piece of work (``Loaded``: generation, model, tokenizer)."""
        if self.holder is not None:
            return self.holder.acquire()
        if self._own_holder is None:
            from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype

            device = resolve_device(self.cfg.model)
            dtype = resolve_dtype(self.cfg.model, device)
            self._own_holder = ModelHolder(
                self.registry, lambda path: load_pretrained(path, device=device, dtype=dtype)
            )
        return self._own_holder.acquire()

    @contextmanager
    def sandbox_source(self) -> Iterator[Any]:
        """The sandbox judges run code in: the daemon's warm one, or one for this phase."""
        if self.sandbox is not None:
            yield self.sandbox
            return
        from selfloop.sandbox import Sandbox

        with Sandbox(self.cfg.sandbox) as sandbox:
            yield sandbox

    def output(self, phase: str) -> dict[str, Any]:
        """What an earlier phase of this cycle returned."""
        return self.detail["phases"][phase]["out"]

    @property
    def run_dir(self) -> Path:
        return self.paths.runs / gen_name(self.generation)


# --------------------------------------------------------------------------- phases


def phase_ingest(ctx: CycleContext) -> dict[str, Any]:
    from selfloop.ingest.ingestor import Ingestor

    report = Ingestor(ctx.cfg.ingest, ctx.cfg.watch, ctx.paths, ctx.store).scan()
    return _jsonable(report)


def phase_rework(ctx: CycleContext) -> dict[str, Any]:
    """The champion writes candidates (none before generation 0 exists, or when disabled)."""
    from selfloop.rework.phase import run_rework

    if not ctx.cfg.rework.enabled or ctx.cfg.rework.candidates_per_cycle == 0:
        return {"skipped": "rework disabled"}
    if ctx.registry.current() is None:
        return {"skipped": "no champion yet (generation 0 trains on original data only)"}
    out = run_rework(ctx.cfg, ctx.store, ctx.cycle_id, ctx.model_source)
    ctx.log(
        f"rework: {out.get('candidates', 0)} candidates"
        + (f" at {out['tokens_per_s']} tokens/s" if out.get("tokens_per_s") else "")
    )
    return out


def phase_judge(ctx: CycleContext) -> dict[str, Any]:
    """The eval space judges this cycle's candidates; accepted ones land in corpus/rework/."""
    from selfloop.rework.phase import run_judge

    rework = ctx.detail["phases"].get("rework", {}).get("out", {"skipped": "no rework phase in this cycle"})
    if "skipped" in rework:
        return {"skipped": rework["skipped"]}
    out = run_judge(ctx.cfg, ctx.paths, ctx.store, ctx.cycle_id, ctx.model_source, ctx.sandbox_source)
    ctx.log(f"judge: {out['accepted']} accepted; " + ", ".join(f"{k} {v}" for k, v in sorted(out["counts"].items())))
    return out


def phase_train(ctx: CycleContext) -> dict[str, Any]:
    """Snapshot the mixture (once), train in a child process (resuming), register the result."""
    from selfloop.model.factory import local_base_dir
    from selfloop.train.data import read_snapshot, summarize
    from selfloop.train.launch import launch_training

    cfg, reg = ctx.cfg, ctx.registry
    champion = reg.current()
    if champion is None:
        init = "scratch" if cfg.model.base == "scratch" else str(local_base_dir(cfg.model, ctx.paths.root))
        steps, parent = cfg.train.gen0_steps, None
    else:
        start = champion if cfg.train.init_from == "champion" else 0
        init, steps, parent = str(reg.path(start)), cfg.train.max_steps, champion

    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if champion is not None and cfg.train.search.enabled:
        return _train_recipes(ctx, init, champion)
    snapshot = ctx.run_dir / "data.jsonl"
    if not snapshot.is_file():  # a resumed run keeps the data it started with
        _write_data(ctx, ctx.run_dir, champion, cfg.train.rework_max_share)
    data = summarize(read_snapshot(snapshot))
    ctx.log(
        f"train: generation {ctx.generation} from {'scratch' if init == 'scratch' else Path(init).name}, "
        f"{steps} steps on {data['documents']} documents (rework share {data['rework_share']:.0%})"
    )

    if ctx.generation not in reg.on_disk():  # registered already if we crashed right after
        result = launch_training(
            cfg.train.launcher,
            ctx.config_path,
            ctx.generation,
            ctx.run_dir,
            init=init,
            steps=steps,
            should_stop=ctx.should_stop,
        )
        recipe = {
            "init": init,
            "init_from": cfg.train.init_from if parent is not None else "gen0",
            "steps": steps,
            **cfg.train.model_dump(mode="json", exclude={"launcher"}),
        }
        manifest = {"parent": parent, "data": data, "train": result, "recipe": recipe, "created_at": time.time()}
        reg.add(ctx.generation, ctx.run_dir / "final", manifest, ctx.cfg.model_dump(mode="json"))
    train = reg.manifest(ctx.generation)["train"]
    out = {"parent": parent, "global_step": train["global_step"], "train_loss": train["train_loss"], "data": data}
    if "preference" in train:
        out["preference"] = train["preference"]
    return out


def _write_data(ctx: CycleContext, run_dir: Path, champion: int | None, rework_max_share: float) -> None:
    """``RUNDIR/data.jsonl``: the mixture a run trains on (and its preference pairs), written once per run."""
    from selfloop.tasks.training import training_docs
    from selfloop.train.data import load_documents, select_mixture, write_snapshot

    cfg = ctx.cfg
    orig = training_docs(load_documents(ctx.store, split="train", origin="orig"), cfg.tasks)
    if not orig:
        raise SelfloopError(f"no active original training documents; add files to {ctx.paths.orig}")
    rework = (
        [] if champion is None else training_docs(load_documents(ctx.store, split="train", origin="rework"), cfg.tasks)
    )
    mixture = select_mixture(
        orig, rework, weight=cfg.train.rework_weight, max_share=rework_max_share, seed=cfg.train.seed + ctx.generation
    )
    _snapshot_pairs(ctx, champion, run_dir)  # before the data snapshot, whose presence means "both written"
    write_snapshot(run_dir / "data.jsonl", mixture)


def _train_recipes(ctx: CycleContext, init: str, champion: int) -> dict[str, Any]:
    """Recipe search: train every recipe of this cycle in ``RUNDIR/recipe-K`` (each resumable on its own).

    The recipes are fixed in ``RUNDIR/recipes.json`` before the first one trains,
    so a resumed cycle trains the same ones. Nothing is registered here: the
    evaluate phase registers the recipe the gate likes best as this generation.
    """
    from selfloop.train.data import read_snapshot, summarize
    from selfloop.train.launch import launch_training
    from selfloop.train.recipes import last_winner
    from selfloop.train.search import incumbent_of, propose

    plan = ctx.run_dir / "recipes.json"
    if plan.is_file():
        recipes = json.loads(plan.read_text(encoding="utf-8"))
    else:
        recipes = propose(incumbent_of(ctx.cfg.train, last_winner(ctx.store)), ctx.cfg.train.search, seed=ctx.cycle_id)
        tmp = plan.with_suffix(".tmp")
        tmp.write_text(json.dumps(recipes, indent=2), encoding="utf-8")
        tmp.replace(plan)
    ctx.log(f"train: recipe search, {len(recipes)} recipes for generation {ctx.generation} from generation {champion}")
    runs = []
    for k, recipe in enumerate(recipes):
        run_dir = ctx.run_dir / f"recipe-{k}"
        run_dir.mkdir(exist_ok=True)
        if not (run_dir / "data.jsonl").is_file():
            _write_data(ctx, run_dir, champion, recipe["rework_max_share"])
        data = summarize(read_snapshot(run_dir / "data.jsonl"))
        result = _finished_run(run_dir)
        if result is None:
            ctx.log(
                f"train: recipe {k}: lr {recipe['learning_rate']:.2e}, {recipe['max_steps']} steps, "
                f"rework share {data['rework_share']:.0%} of {data['documents']} documents"
            )
            ctx.store.set_meta("train.total_steps", str(recipe["max_steps"]))
            result = launch_training(
                ctx.cfg.train.launcher,
                ctx.config_path,
                ctx.generation,
                run_dir,
                init=init,
                steps=recipe["max_steps"],
                should_stop=ctx.should_stop,
                learning_rate=recipe["learning_rate"],
            )
        runs.append({"recipe": recipe, "data": data, "train": result})
    return {
        "parent": champion,
        "global_step": sum(r["train"]["global_step"] for r in runs),
        "train_loss": runs[0]["train"]["train_loss"],
        "data": runs[0]["data"],
        "recipes": runs,
    }


def _finished_run(run_dir: Path) -> dict[str, Any] | None:
    """A recipe's result when it already trained to the end (a resumed cycle does not train it again)."""
    try:
        result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if result.get("status") == "done" and (run_dir / "final").is_dir() else None


def _snapshot_pairs(ctx: CycleContext, champion: int | None, run_dir: Path) -> None:
    """``RUNDIR/pairs.jsonl`` when this run ends with preference training (written with the data snapshot, kept on resume)."""
    from selfloop.train.preference import preference_enabled, select_pairs, write_pairs

    pref, launcher = ctx.cfg.train.preference, ctx.cfg.train.launcher
    if champion is None or pref.enabled is False:
        return  # generation 0 has no judged pairs yet
    import importlib.util

    import torch

    if not preference_enabled(pref, torch.cuda.is_available()):
        return
    if launcher.nproc_per_node * launcher.nnodes > 1:
        ctx.log("train: preference step skipped: it runs in one process (train.launcher starts several)")
        return
    pairs = select_pairs(ctx.store, pref)
    if pairs and importlib.util.find_spec("trl") is None:  # fail before SFT, not after it
        raise SelfloopError(
            "train.preference is enabled but TRL is not installed: pip install 'selfloop[preference]' "
            "(or set [train.preference] enabled = false)"
        )
    if pairs:
        write_pairs(run_dir / "pairs.jsonl", pairs)
        ctx.log(f"train: preference step (DPO) on {len(pairs)} judged pairs after SFT")


def phase_evaluate(ctx: CycleContext) -> dict[str, Any]:
    """Figures of the challenger and its champion on the same held-out documents."""
    from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
    from selfloop.tasks.training import heldout_loss_docs, training_docs
    from selfloop.train.data import load_documents
    from selfloop.train.evaluate import evaluate
    from selfloop.train.suite import TaskSuite

    raw_heldout = load_documents(ctx.store, split="heldout", origin="orig")
    heldout = training_docs(raw_heldout, ctx.cfg.tasks)  # held-out tasks count in the loss in their trained format
    if ctx.cfg.tasks.enabled:
        heldout += heldout_loss_docs(ctx.cfg.tasks, ctx.cfg.ingest.heldout_fraction)
    if "recipes" in ctx.output("train"):
        return _evaluate_recipes(ctx, heldout, raw_heldout)
    device = resolve_device(ctx.cfg.model)
    dtype = resolve_dtype(ctx.cfg.model, device)
    parent = ctx.output("train")["parent"]
    models = {}
    try:
        models["challenger"] = load_pretrained(ctx.registry.path(ctx.generation), device=device, dtype=dtype)
    except SelfloopError as e:
        return {"challenger": {"loss": None, "error": str(e)}, "champion": None}
    if parent is not None:
        models["champion"] = load_pretrained(ctx.registry.path(parent), device=device, dtype=dtype)
    suite = _task_suite(ctx, raw_heldout)
    figures = evaluate(models, heldout, ctx.cfg.train, suite)
    if isinstance(suite, TaskSuite):
        for name, (model, _) in models.items():
            figures[name]["task_detail"] = suite.detail(model)
    ctx.registry.update(
        ctx.generation, metrics=_without_samples(figures["challenger"]), samples=figures["challenger"]["samples"]
    )
    ctx.log(
        f"evaluate: challenger loss {_f(figures['challenger'].get('loss'))}"
        + (f", champion loss {_f(figures['champion'].get('loss'))}" if "champion" in figures else "")
    )
    return {"challenger": figures["challenger"], "champion": figures.get("champion")}


def _task_suite(ctx: CycleContext, raw_heldout: list[Any]) -> Any:
    """The held-out task suite of an evaluation: the caller's, else pass@1 per family and difficulty
    whenever tasks are enabled (part of every evaluation)."""
    from selfloop.tasks.training import task_records
    from selfloop.train.suite import TaskSuite

    if ctx.task_suite is not None or not ctx.cfg.tasks.enabled:
        return ctx.task_suite
    return TaskSuite(
        ctx.cfg.tasks,
        ctx.cfg.judge,
        ctx.sandbox_source,
        heldout_fraction=ctx.cfg.ingest.heldout_fraction,
        corpus_heldout=task_records(raw_heldout),
    )


def _evaluate_recipes(ctx: CycleContext, heldout: list[Any], raw_heldout: list[Any]) -> dict[str, Any]:
    """Recipe search: figures of every recipe's challenger and of the champion; the gate's favourite
    is registered as this cycle's generation (its challenger), every recipe goes into the history."""
    import gc

    from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
    from selfloop.train.evaluate import evaluate_model
    from selfloop.train.recipes import record
    from selfloop.train.search import choose
    from selfloop.train.suite import TaskSuite

    cfg, reg, train = ctx.cfg, ctx.registry, ctx.output("train")
    device = resolve_device(cfg.model)
    dtype = resolve_dtype(cfg.model, device)
    suite = _task_suite(ctx, raw_heldout)

    def figures_of(path: Path) -> dict[str, Any]:
        model, tok = load_pretrained(path, device=device, dtype=dtype)
        figures = evaluate_model(model, tok, heldout, cfg.train, suite)
        if isinstance(suite, TaskSuite):
            figures["task_detail"] = suite.detail(model)
        del model, tok
        gc.collect()  # one recipe's model in memory at a time
        return figures

    champion = _without_samples(figures_of(reg.path(train["parent"])))
    challengers: list[dict[str, Any]] = []
    for k in range(len(train["recipes"])):
        try:
            challengers.append(figures_of(ctx.run_dir / f"recipe-{k}" / "final"))
        except SelfloopError as e:
            challengers.append({"loss": None, "error": str(e), "samples": []})
    choice = choose([_without_samples(c) for c in challengers], champion, cfg.gate)
    best = choice.best
    ctx.log(
        "evaluate: recipes "
        + "; ".join(
            f"#{k} lr {run['recipe']['learning_rate']:.2e} loss {_f(c.get('loss'))}{' <- chosen' if k == best else ''}"
            for k, (run, c) in enumerate(zip(train["recipes"], challengers, strict=True))
        )
        + f"; champion loss {_f(champion.get('loss'))}"
    )
    entries = [
        {
            "params": run["recipe"],
            "decision": d.reason,
            "figures": {
                "loss": c.get("loss"),
                "tasks": c.get("tasks") or {},
                "error": c.get("error"),
                "global_step": run["train"]["global_step"],
                "seconds": run["train"].get("seconds"),
            },
        }
        for run, c, d in zip(train["recipes"], challengers, choice.decisions, strict=True)
    ]
    record(ctx.store, ctx.cycle_id, ctx.generation, entries, best)
    winner = train["recipes"][best]
    if ctx.generation not in reg.on_disk():  # registered already if we crashed right after
        recipe = {
            "init": str(reg.path(train["parent"])),
            "init_from": cfg.train.init_from,
            **cfg.train.model_dump(mode="json", exclude={"launcher"}),
            **winner["recipe"],
            "steps": winner["recipe"]["max_steps"],
            "search": {"index": best, "of": len(entries)},
        }
        manifest = {
            "parent": train["parent"],
            "data": winner["data"],
            "train": winner["train"],
            "recipe": recipe,
            "created_at": time.time(),
        }
        reg.add(ctx.generation, ctx.run_dir / f"recipe-{best}" / "final", manifest, cfg.model_dump(mode="json"))
    reg.update(
        ctx.generation, metrics=_without_samples(challengers[best]), samples=challengers[best].get("samples", [])
    )
    return {
        "challenger": challengers[best],
        "champion": champion,
        "recipes": [{"params": e["params"], **e["figures"], "decision": e["decision"]} for e in entries],
        "chosen": best,
    }


def phase_gate(ctx: CycleContext) -> dict[str, Any]:
    from selfloop.train.gate import decide

    ev = ctx.output("evaluate")
    champion = _without_samples(ev["champion"]) if ev["champion"] else None
    decision = decide(_without_samples(ev["challenger"]), champion, ctx.cfg.gate)
    ctx.log(f"gate: {'PROMOTE' if decision.promote else 'REJECT'} generation {ctx.generation}: {decision.reason}")
    return decision.to_dict()


def phase_promote(ctx: CycleContext) -> dict[str, Any]:
    """Act on the gate: move ``current`` or keep the champion; prune; drop the run's checkpoints."""
    gate = ctx.output("gate")
    if gate["promote"]:
        ctx.registry.promote(ctx.generation, gate)
        if "recipes" in ctx.output("evaluate"):
            from selfloop.train.recipes import mark_promoted

            mark_promoted(ctx.store, ctx.cycle_id)  # the next cycle starts from this recipe
    else:
        ctx.registry.reject(ctx.generation, gate)
    if ctx.holder is not None and ctx.holder.reload_if_changed():
        # Hot reload: the daemon's rework model is the new champion from now on;
        # work that acquired the old one finishes on it.
        ctx.store.event(
            "reloaded", f"generation {ctx.holder.generation} loaded for rework", generation=ctx.holder.generation
        )
    pruned = ctx.registry.prune(ctx.cfg.model.keep_generations)
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    ctx.log(f"promote: current is generation {ctx.registry.current()}" + (f"; pruned {pruned}" if pruned else ""))
    out = {"promoted": gate["promote"], "current": ctx.registry.current(), "pruned": pruned}
    if ctx.cfg.tasks.enabled:
        from selfloop.tasks.curriculum import step

        ev = ctx.output("evaluate")
        champion = ev["challenger"] if gate["promote"] else (ev.get("champion") or {})
        steps = step(ctx.store, ctx.cfg.tasks, champion.get("task_detail") or {}, ctx.cycle_id)
        out["curriculum"] = [s.to_dict() for s in steps]
        ctx.log(
            "curriculum: "
            + "; ".join(
                f"{s.family} level {s.new_level}" + ("" if s.new_level == s.level else " (advanced)") for s in steps
            )
        )
    return out


# The cycle's phases in order.
PHASES: list[tuple[str, Callable[[CycleContext], dict[str, Any]]]] = [
    ("ingest", phase_ingest),
    ("rework", phase_rework),
    ("judge", phase_judge),
    ("train", phase_train),
    ("evaluate", phase_evaluate),
    ("gate", phase_gate),
    ("promote", phase_promote),
]


# --------------------------------------------------------------------------- driver


def run_cycle(
    cfg: Config,
    paths: ProjectPaths,
    store: Store,
    *,
    config_path: Path,
    phases: list[tuple[str, Callable[[CycleContext], dict[str, Any]]]] | None = None,
    task_suite: Callable[[Any, Any], dict[str, float]] | None = None,
    log: Log = lambda msg: None,
    should_stop: Callable[[], bool] = lambda: False,
    holder: ModelHolder | None = None,
    sandbox: Any = None,
) -> dict[str, Any]:
    """Run (or resume) one cycle to the end and return its ``detail`` (phase outputs).

    ``should_stop`` is polled at every phase boundary and during training; when
    it turns true the cycle is recorded ``interrupted`` and ``CycleInterrupted``
    (or ``TrainingInterrupted``) is raised; the next call resumes it.
    """
    phases = PHASES if phases is None else phases
    registry = Registry(paths.models, store)
    registry.clean_temp()
    cycle_id, generation, detail = _resume_or_start(store, registry, paths)
    ctx = CycleContext(
        cfg,
        paths,
        store,
        Path(config_path),
        registry,
        cycle_id,
        generation,
        detail,
        task_suite,
        log,
        should_stop,
        holder,
        sandbox,
    )
    for name, func in phases:
        if detail["phases"].get(name, {}).get("status") == "done":
            continue
        if should_stop():
            _save(store, cycle_id, name, "interrupted", detail, error="stop requested")
            raise CycleInterrupted(f"cycle {cycle_id} stopped before {name}; it resumes there next time")
        detail["phases"][name] = {"status": "running", "started": time.time()}
        _save(store, cycle_id, name, "running", detail)
        try:
            out = func(ctx)
        except (TrainingInterrupted, KeyboardInterrupt) as e:
            detail["phases"][name]["status"] = "interrupted"
            _save(store, cycle_id, name, "interrupted", detail, error=str(e) or type(e).__name__)
            raise
        except BaseException as e:
            detail["phases"][name]["status"] = "failed"
            _save(store, cycle_id, name, "failed", detail, error=f"{type(e).__name__}: {e}", finished=True)
            store.event("cycle", f"cycle {cycle_id} failed in {name}: {e}", cycle=cycle_id, phase=name)
            raise
        detail["phases"][name] = {**detail["phases"][name], "status": "done", "finished": time.time(), "out": out}
        _save(store, cycle_id, name, "running", detail)
    _save(store, cycle_id, "done", "done", detail, finished=True)
    store.event("cycle", f"cycle {cycle_id} done (generation {generation})", cycle=cycle_id, generation=generation)
    return detail


def _resume_or_start(store: Store, registry: Registry, paths: ProjectPaths) -> tuple[int, int, dict[str, Any]]:
    row = store.query(
        "SELECT id, generation, detail FROM cycles WHERE status IN ('running', 'interrupted') ORDER BY id DESC LIMIT 1"
    )
    if row:
        detail = json.loads(row[0]["detail"])
        detail.setdefault("phases", {})
        store.event("cycle", f"resuming cycle {row[0]['id']}", cycle=row[0]["id"])
        return row[0]["id"], row[0]["generation"], detail
    used = [
        store.scalar("SELECT MAX(id) FROM generations"),
        store.scalar("SELECT MAX(generation) FROM cycles"),
        *registry.on_disk(),
    ]
    generation = max((u for u in used if u is not None), default=-1) + 1
    if paths.runs.is_dir():  # run dirs of failed cycles are never resumed
        for stale in paths.runs.iterdir():
            shutil.rmtree(stale, ignore_errors=True)
    detail: dict[str, Any] = {"phases": {}}
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO cycles (started_at, phase, status, generation, detail) VALUES (?, 'start', 'running', ?, ?)",
            (time.time(), generation, json.dumps(detail)),
        )
        cycle_id = int(cur.lastrowid)
    store.event("cycle", f"cycle {cycle_id} started (generation {generation})", cycle=cycle_id, generation=generation)
    return cycle_id, generation, detail


def _save(
    store: Store,
    cycle_id: int,
    phase: str,
    status: str,
    detail: dict[str, Any],
    *,
    error: str | None = None,
    finished: bool = False,
) -> None:
    with store.tx() as c:
        c.execute(
            "UPDATE cycles SET phase = ?, status = ?, detail = ?, error = ?, finished_at = ? WHERE id = ?",
            (phase, status, json.dumps(detail, default=str), error, time.time() if finished else None, cycle_id),
        )


def _without_samples(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "samples"}


def _jsonable(value: Any) -> Any:
    """A phase output (e.g. the ingest report dataclass) as plain JSON data; mapping keys become strings."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {
            (k if isinstance(k, str) else "/".join(map(str, k)) if isinstance(k, tuple) else str(k)): _jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _f(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"
