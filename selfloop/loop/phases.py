"""The phases of a cycle and their typed outputs.

Phases run in order: ``ingest -> rework -> judge -> train -> evaluate -> gate -> promote``, each a function
``(CycleContext) -> output`` whose ``to_json()`` is stored in ``cycles.detail`` and read back with ``from_json``.
Those JSON shapes are the state database's format (older selfloops wrote them too): keep them.

Does not cover: running phases in order and resuming (``selfloop.loop.cycle``).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from selfloop.errors import SelfloopError
from selfloop.ingest.ingestor import Ingestor
from selfloop.model.base import resolve_base
from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
from selfloop.rework.phase import run_judge, run_rework
from selfloop.store.corpus import load_documents
from selfloop.store.runs import last_winner, mark_recipe_promoted, record_recipes
from selfloop.tasks.curriculum import step
from selfloop.tasks.training import heldout_loss_docs, task_records, training_docs
from selfloop.train.data import read_snapshot, select_mixture, summarize, write_snapshot
from selfloop.train.evaluate import evaluate_model
from selfloop.train.gate import Decision, decide, headline
from selfloop.train.launch import launch_training
from selfloop.train.preference import preference_enabled, select_pairs, write_pairs
from selfloop.train.rundir import RunDir, RunValues
from selfloop.train.search import choose, incumbent_of, propose
from selfloop.train.suite import TaskSuite

if TYPE_CHECKING:
    from selfloop.loop.cycle import CycleContext

Figures = dict[str, Any]  # one model's evaluation (selfloop.train.evaluate): loss, tasks, samples, ...


class Output(Protocol):
    def to_json(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Report:
    """The output of a phase another package computes (ingest, rework, judge): its mapping, stored as is."""

    values: dict[str, Any]

    @classmethod
    def skip(cls, reason: str) -> Report:
        return cls({"skipped": reason})

    @property
    def skipped(self) -> str | None:
        return self.values.get("skipped")

    def to_json(self) -> dict[str, Any]:
        return self.values

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Report:
        return cls(dict(d))


@dataclass(frozen=True)
class RecipeRun:
    """One recipe a search trained: its searched values, its data summary, the child's ``result.json``."""

    recipe: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecipeRun:
        return cls(d["recipe"], d["data"], d["train"])


@dataclass(frozen=True)
class TrainOut:
    parent: int | None  # the champion the challenger is measured against (None for generation 0)
    global_step: int | None = None  # summed over a search's recipes
    train_loss: float | None = None
    data: dict[str, Any] | None = None  # the (first) recipe's data summary
    preference: dict[str, Any] | None = None  # the DPO step's figures, when one ran (one-recipe cycles)
    recipes: list[RecipeRun] | None = None  # under a recipe search only

    def to_json(self) -> dict[str, Any]:
        out = {"parent": self.parent, "global_step": self.global_step, "train_loss": self.train_loss, "data": self.data}
        if self.preference is not None:
            out["preference"] = self.preference
        if self.recipes is not None:
            out["recipes"] = [r.to_json() for r in self.recipes]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainOut:
        recipes = d.get("recipes")
        return cls(
            d.get("parent"),
            d.get("global_step"),
            d.get("train_loss"),
            d.get("data"),
            d.get("preference"),
            None if recipes is None else [RecipeRun.from_json(r) for r in recipes],
        )


@dataclass(frozen=True)
class RecipeOutcome:
    """One recipe's line of a search's evaluation (and its row in the ``recipes`` table)."""

    params: dict[str, Any]
    loss: float | None
    tasks: dict[str, float]
    error: str | None
    global_step: int
    seconds: float | None
    decision: str

    def figures(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("params", "decision")}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecipeOutcome:
        return cls(d["params"], d["loss"], d["tasks"], d["error"], d["global_step"], d["seconds"], d["decision"])


@dataclass(frozen=True)
class EvaluateOut:
    challenger: Figures  # a search's: the chosen recipe's
    champion: Figures | None
    recipes: list[RecipeOutcome] | None = None  # under a recipe search only
    chosen: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"challenger": self.challenger, "champion": self.champion}
        if self.recipes is not None:
            out["recipes"] = [r.to_json() for r in self.recipes]
            out["chosen"] = self.chosen
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvaluateOut:
        recipes = d.get("recipes")
        return cls(
            d["challenger"],
            d.get("champion"),
            None if recipes is None else [RecipeOutcome.from_json(r) for r in recipes],
            d.get("chosen"),
        )


@dataclass(frozen=True)
class GateOut:
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        return self.decision.to_dict()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GateOut:
        return cls(Decision(d["promote"], d["reason"], d.get("figures", {})))


@dataclass(frozen=True)
class PromoteOut:
    promoted: bool
    current: int | None
    pruned: list[int]
    curriculum: list[dict[str, Any]] | None = None  # when tasks are enabled

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"promoted": self.promoted, "current": self.current, "pruned": self.pruned}
        if self.curriculum is not None:
            out["curriculum"] = self.curriculum
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PromoteOut:
        return cls(d["promoted"], d["current"], d["pruned"], d.get("curriculum"))


# --------------------------------------------------------------------------- corpus phases


def phase_ingest(ctx: CycleContext) -> Report:

    return Report(_jsonable(Ingestor(ctx.cfg.ingest, ctx.cfg.watch, ctx.paths, ctx.store).scan()))


def phase_rework(ctx: CycleContext) -> Report:
    """The champion writes candidates (none before generation 0 exists, or when disabled)."""
    if not ctx.cfg.rework.enabled or ctx.cfg.rework.candidates_per_cycle == 0:
        return Report.skip("rework disabled")
    if ctx.registry.current() is None:
        return Report.skip("no champion yet (generation 0 trains on original data only)")
    out = run_rework(ctx.cfg, ctx.store, ctx.cycle_id, ctx.model_source)
    ctx.log(
        f"rework: {out.get('candidates', 0)} candidates"
        + (f" at {out['tokens_per_s']} tokens/s" if out.get("tokens_per_s") else "")
    )
    return Report(out)


def phase_judge(ctx: CycleContext) -> Report:
    """The eval space judges this cycle's candidates; accepted ones land in corpus/rework/."""
    rework = ctx.detail["phases"].get("rework", {}).get("out", {"skipped": "no rework phase in this cycle"})
    skipped = Report.from_json(rework).skipped
    if skipped is not None:
        return Report.skip(skipped)
    out = run_judge(ctx.cfg, ctx.paths, ctx.store, ctx.cycle_id, ctx.model_source, ctx.sandbox_source)
    ctx.log(f"judge: {out['accepted']} accepted; " + ", ".join(f"{k} {v}" for k, v in sorted(out["counts"].items())))
    return Report(out)


# --------------------------------------------------------------------------- train


def phase_train(ctx: CycleContext) -> TrainOut:
    """Snapshot each recipe's mixture (once), train it in a child process (resuming); a single recipe is registered.

    A search's recipes are fixed in ``RUNDIR/recipes.json`` before the first one
    trains, so a resumed cycle trains the same ones, and a recipe that already
    trained to the end is not trained again.

    A cycle trains the recipes of a recipe search (``[train.search]``), and without a
    search the one recipe of ``[train]``. A one-recipe cycle trains in the run dir itself
    and registers its generation at once; a search trains recipe K in ``RUNDIR/recipe-K``
    and registers the recipe the gate likes best when it has evaluated them all (its
    outputs then have ``recipes``). Generation 0 is trained from scratch (or from the
    local base model) when there is no champion yet.
    """
    cfg, reg = ctx.cfg, ctx.registry
    champion = reg.current()
    init = _init(ctx, champion)
    searching = champion is not None and cfg.train.search.enabled
    ctx.run.path.mkdir(parents=True, exist_ok=True)
    recipes = _recipes(ctx, champion, searching)
    if searching:
        ctx.log(
            f"train: recipe search, {len(recipes)} recipes for generation {ctx.generation} from generation {champion}"
        )
    runs = []
    for k, recipe in enumerate(recipes):
        run = ctx.run.recipe(k) if searching else ctx.run
        run.path.mkdir(exist_ok=True)
        if not run.data.is_file():  # a resumed run keeps the data it started with
            _write_data(ctx, run, champion, recipe["rework_max_share"])
        data = summarize(read_snapshot(run.data))
        values = _values(ctx, init, recipe)
        run.write_config(cfg, values)
        if not searching:
            ctx.log(
                f"train: generation {ctx.generation} from {'scratch' if init == 'scratch' else Path(init).name}, "
                f"{values.steps} steps on {data['documents']} documents (rework share {data['rework_share']:.0%})"
            )
        result = _finished_run(run)
        if result is None:
            if searching:
                ctx.log(
                    f"train: recipe {k}: lr {recipe['learning_rate']:.2e}, {recipe['max_steps']} steps, "
                    f"rework share {data['rework_share']:.0%} of {data['documents']} documents"
                )
            ctx.store.set_meta("train.total_steps", str(values.steps))
            result = launch_training(run.path, should_stop=ctx.should_stop)
        runs.append(RecipeRun(recipe, data, result))
    if searching:
        return TrainOut(
            parent=champion,
            global_step=sum(r.train["global_step"] for r in runs),
            train_loss=runs[0].train["train_loss"],
            data=runs[0].data,
            recipes=runs,
        )
    _register(ctx, champion, ctx.run, runs[0])  # one recipe: it is the challenger
    train = reg.manifest(ctx.generation)["train"]
    return TrainOut(champion, train["global_step"], train["train_loss"], runs[0].data, train.get("preference"))


def _init(ctx: CycleContext, champion: int | None) -> str:
    """Where a run starts: scratch or the base model for generation 0, else the champion or generation 0."""
    cfg = ctx.cfg
    if champion is None:
        base = resolve_base(cfg.model.base, ctx.paths.root, ctx.paths.state, log=ctx.log)
        return "scratch" if base is None else str(base)
    return str(ctx.registry.path(champion if cfg.train.init_from == "champion" else 0))


def _values(ctx: CycleContext, init: str, recipe: dict[str, Any]) -> RunValues:
    return RunValues.of(
        ctx.cfg,
        ctx.paths,
        generation=ctx.generation,
        init=init,
        steps=recipe["max_steps"],
        learning_rate=recipe["learning_rate"],
        source=ctx.config_path,
    )


def _recipes(ctx: CycleContext, champion: int | None, searching: bool) -> list[dict[str, Any]]:
    """The searched values of every recipe this cycle trains: ``[train]``'s alone, or a search's plan."""
    t = ctx.cfg.train
    if not searching:
        steps = t.gen0_steps if champion is None else t.max_steps
        return [{"learning_rate": t.learning_rate, "max_steps": steps, "rework_max_share": t.rework_max_share}]
    if ctx.run.recipes.is_file():
        return json.loads(ctx.run.recipes.read_text(encoding="utf-8"))
    recipes = propose(incumbent_of(t, last_winner(ctx.store)), t.search, seed=ctx.cycle_id)
    tmp = ctx.run.recipes.with_suffix(".tmp")
    tmp.write_text(json.dumps(recipes, indent=2), encoding="utf-8")
    tmp.replace(ctx.run.recipes)
    return recipes


def _register(
    ctx: CycleContext, parent: int | None, run: RunDir, trained: RecipeRun, search: dict[str, int] | None = None
) -> None:
    """Install ``run``'s model as this cycle's generation with its manifest and the config it trained with."""
    if ctx.generation in ctx.registry.on_disk():  # registered already if we crashed right after
        return
    if not run.config.is_file():  # a search an older selfloop trained wrote none
        run.write_config(ctx.cfg, _values(ctx, _init(ctx, parent), trained.recipe))
    cfg, values = run.read_config()
    recipe = {
        "init": values.init,
        "init_from": cfg.train.init_from if parent is not None else "gen0",
        "steps": values.steps,
        **cfg.train.model_dump(mode="json", exclude={"launcher"}),
    }
    if search is not None:
        recipe.update(trained.recipe, steps=values.steps, search=search)
    manifest = {
        "parent": parent,
        "data": trained.data,
        "train": trained.train,
        "recipe": recipe,
        "created_at": time.time(),
    }
    ctx.registry.add(ctx.generation, run.final, manifest, run.resolved_config(), extras=run.kept())


def _write_data(ctx: CycleContext, run: RunDir, champion: int | None, rework_max_share: float) -> None:
    """``RUNDIR/data.jsonl``: the mixture a run trains on (and its preference pairs), written once per run."""
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
    _snapshot_pairs(ctx, champion, run)  # before the data snapshot, whose presence means "both written"
    write_snapshot(run.data, mixture)


def _finished_run(run: RunDir) -> dict[str, Any] | None:
    """A run's result when it already trained to the end (a resumed cycle does not train it again)."""
    try:
        result = json.loads(run.result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if result.get("status") == "done" and run.final.is_dir() else None


def _snapshot_pairs(ctx: CycleContext, champion: int | None, run: RunDir) -> None:
    """``RUNDIR/pairs.jsonl`` when this run ends with preference training (written with the data snapshot)."""
    pref, launcher = ctx.cfg.train.preference, ctx.cfg.train.launcher
    if champion is None or pref.enabled is False:
        return  # generation 0 has no judged pairs yet
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
        write_pairs(run.pairs, pairs)
        ctx.log(f"train: preference step (DPO) on {len(pairs)} judged pairs after SFT")


# --------------------------------------------------------------------------- evaluate


def phase_evaluate(ctx: CycleContext) -> EvaluateOut:
    """Figures of every challenger and of its champion on the same held-out documents, one model at a time.

    The loss is reported over every held-out document (tasks in their trained format); the gate's loss guard
    gets per-example losses over the held-out text and chat that are not tasks, and its task tables come from the
    gate split. Under a search the gate's favourite recipe is registered as this cycle's
    generation and every recipe goes into the history.
    """
    cfg, reg = ctx.cfg, ctx.registry
    train = TrainOut.from_json(ctx.output("train"))
    raw_heldout = load_documents(ctx.store, split="heldout", origin="orig")
    heldout = training_docs(raw_heldout, cfg.tasks)  # held-out tasks count in the loss in their trained format
    if cfg.tasks.enabled:
        heldout += heldout_loss_docs(cfg.tasks, cfg.ingest.heldout_fraction)
    device = resolve_device(cfg.model)
    dtype = resolve_dtype(cfg.model, device)
    guard = [d for d in raw_heldout if d.kind != "task"]
    suite = _task_suite(ctx, raw_heldout)
    gate_suite = _gate_suite(ctx) if train.parent is not None else None  # generation 0 has nothing to compare

    def figures_of(model, tok) -> Figures:
        figures = evaluate_model(model, tok, heldout, cfg.train, suite, guard_docs=guard)
        if isinstance(suite, TaskSuite):
            figures["task_detail"] = suite.detail(model)
        if gate_suite is not None:
            figures["gate"] = gate_suite.table(model, tok)
        return figures

    searched = train.recipes is not None
    finals = [ctx.run.recipe(k).final for k in range(len(train.recipes))] if searched else [reg.path(ctx.generation)]
    challengers: list[Figures] = []
    for path in finals:
        try:
            model, tok = load_pretrained(path, device=device, dtype=dtype)
        except SelfloopError as e:
            if not searched:  # the only challenger: nothing to compare
                return EvaluateOut({"loss": None, "error": str(e)}, None)
            challengers.append({"loss": None, "error": str(e), "samples": []})
            continue
        challengers.append(figures_of(model, tok))
        del model, tok
        gc.collect()  # one model in memory at a time
    champion = None
    if train.parent is not None:
        champion = figures_of(*load_pretrained(reg.path(train.parent), device=device, dtype=dtype))
    if not searched:
        ctx.log(
            f"evaluate: challenger loss {_f(challengers[0].get('loss'))}"
            + (f", champion loss {_f(champion.get('loss'))}" if champion is not None else "")
        )
        out = EvaluateOut(challengers[0], champion)
    else:
        out = _choose(ctx, train, challengers, _without_samples(champion))
    reg.update(ctx.generation, metrics=headline(out.challenger), samples=out.challenger.get("samples", []))
    return out


def _choose(ctx: CycleContext, train: TrainOut, challengers: list[Figures], champion: Figures) -> EvaluateOut:
    """A search's choice: the gate's verdict on every recipe, the history, and the favourite registered."""
    assert train.recipes is not None
    choice = choose(
        [_without_samples(c) for c in challengers], champion, ctx.cfg.gate, mastered=ctx.cfg.tasks.advance_threshold
    )
    best = choice.best
    ctx.log(
        "evaluate: recipes "
        + "; ".join(
            f"#{k} lr {run.recipe['learning_rate']:.2e} loss {_f(c.get('loss'))}{' <- chosen' if k == best else ''}"
            for k, (run, c) in enumerate(zip(train.recipes, challengers, strict=True))
        )
        + f"; champion loss {_f(champion.get('loss'))}"
    )
    outcomes = [
        RecipeOutcome(
            params=run.recipe,
            loss=c.get("loss"),
            tasks=c.get("tasks") or {},
            error=c.get("error"),
            global_step=run.train["global_step"],
            seconds=run.train.get("seconds"),
            decision=d.reason,
        )
        for run, c, d in zip(train.recipes, challengers, choice.decisions, strict=True)
    ]
    record_recipes(
        ctx.store,
        ctx.cycle_id,
        ctx.generation,
        [{"params": o.params, "decision": o.decision, "figures": o.figures()} for o in outcomes],
        best,
    )
    search = {"index": best, "of": len(outcomes)}
    _register(ctx, train.parent, ctx.run.recipe(best), train.recipes[best], search)
    return EvaluateOut(challengers[best], champion, outcomes, best)


def _task_suite(ctx: CycleContext, raw_heldout: list[Any]) -> Any:
    """The held-out task suite of an evaluation: the caller's, else pass@1 per family and difficulty
    whenever tasks are enabled (part of every evaluation)."""
    if ctx.task_suite is not None or not ctx.cfg.tasks.enabled:
        return ctx.task_suite
    return TaskSuite(
        ctx.cfg.tasks,
        ctx.cfg.judge,
        ctx.sandbox_source,
        heldout_fraction=ctx.cfg.ingest.heldout_fraction,
        corpus_heldout=task_records(raw_heldout),
    )


def _gate_suite(ctx: CycleContext) -> TaskSuite | None:
    """The gate split's suite, when the generated task families are evaluated by the daemon's own suite (a
    caller's suite has no gate split: its pass@1 is reported, not gated)."""
    tasks = ctx.cfg.tasks
    if ctx.task_suite is not None or not tasks.enabled or not tasks.families:
        return None
    return TaskSuite(
        tasks, ctx.cfg.judge, ctx.sandbox_source, heldout_fraction=ctx.cfg.ingest.heldout_fraction, split="gate"
    )


# --------------------------------------------------------------------------- gate, promote


def phase_gate(ctx: CycleContext) -> GateOut:
    ev = EvaluateOut.from_json(ctx.output("evaluate"))
    champion = _without_samples(ev.champion) if ev.champion else None
    decision = decide(_without_samples(ev.challenger), champion, ctx.cfg.gate, mastered=ctx.cfg.tasks.advance_threshold)
    ctx.log(f"gate: {'PROMOTE' if decision.promote else 'REJECT'} generation {ctx.generation}: {decision.reason}")
    return GateOut(decision)


def phase_promote(ctx: CycleContext) -> PromoteOut:
    """Act on the gate: move ``current`` or keep the champion; prune; drop the run's checkpoints."""
    gate = ctx.output("gate")
    promote = GateOut.from_json(gate).decision.promote
    ev = EvaluateOut.from_json(ctx.output("evaluate"))
    if promote:
        ctx.registry.promote(ctx.generation, gate)
        if ev.recipes is not None:
            mark_recipe_promoted(ctx.store, ctx.cycle_id)  # the next cycle starts from this recipe
    else:
        ctx.registry.reject(ctx.generation, gate)
    if ctx.holder is not None and ctx.holder.reload_if_changed():
        # Hot reload: the daemon's rework model is the new champion from now on;
        # work that acquired the old one finishes on it.
        ctx.store.event(
            "reloaded", f"generation {ctx.holder.generation} loaded for rework", generation=ctx.holder.generation
        )
    pruned = ctx.registry.prune(ctx.cfg.model.keep_generations)
    shutil.rmtree(ctx.run.path, ignore_errors=True)
    ctx.log(f"promote: current is generation {ctx.registry.current()}" + (f"; pruned {pruned}" if pruned else ""))
    curriculum = None
    if ctx.cfg.tasks.enabled:
        champion = ev.challenger if promote else (ev.champion or {})
        steps = step(ctx.store, ctx.cfg.tasks, champion.get("task_detail") or {}, ctx.cycle_id)
        curriculum = [s.to_dict() for s in steps]
        ctx.log(
            "curriculum: "
            + "; ".join(
                f"{s.family} level {s.new_level}" + ("" if s.new_level == s.level else " (advanced)") for s in steps
            )
        )
    return PromoteOut(promote, ctx.registry.current(), pruned, curriculum)


# The cycle's phases in order.
Phase = Callable[["CycleContext"], Output | dict[str, Any]]  # a caller's own phase may return a plain mapping
PHASES: list[tuple[str, Phase]] = [
    ("ingest", phase_ingest),
    ("rework", phase_rework),
    ("judge", phase_judge),
    ("train", phase_train),
    ("evaluate", phase_evaluate),
    ("gate", phase_gate),
    ("promote", phase_promote),
]


def _without_samples(figures: Figures) -> Figures:
    return {k: v for k, v in figures.items() if k != "samples"}


def _jsonable(value: Any) -> Any:
    """A phase output (e.g. the ingest report dataclass) as plain JSON data; mapping keys become strings."""
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
