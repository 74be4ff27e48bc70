"""Held-out pass@1: the fixed task suites every evaluation runs.

The reported split (``build_items``): the fixed held-out tasks of each configured family and difficulty plus the
corpus's held-out task documents. The gate split (``gate_items``): other held-out generated tasks, disjoint from the
reported ones, on which the gate decides, so that the figures the dashboard reports are not the ones selected on.
Each task is asked greedily once per answer mode and judged by the ``task`` pipeline in the sandbox, exactly as solve
candidates are (a hard-coded answer fails its variants and scores 0). Per-question outcomes are kept in item order
(fixed for a config), so two models can be compared question by question.

Does not cover: training data (held-out tasks never enter it: solve draws only train-split problems) or the
promotion rule (``selfloop.train.gate``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from selfloop.config import JudgeConfig, TasksConfig
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.model.generate import generate
from selfloop.records import TaskRecord
from selfloop.tasks.families import family_of, heldout_set, problems

EVAL_BATCH = 64


@dataclass(frozen=True)
class Item:
    task: TaskRecord
    mode: str
    prompt: str  # the user turn, in the family's format


def build_items(cfg: TasksConfig, heldout_fraction: float, corpus_heldout: Iterable[TaskRecord] = ()) -> list[Item]:
    """The reported suite's questions: fixed generated held-out tasks, then the corpus's held-out tasks."""
    tasks: list[TaskRecord] = []
    for family in cfg.families:
        for difficulty in range(1, cfg.max_difficulty + 1):
            tasks += heldout_set(
                family, difficulty, cfg.heldout_per_level, seed=cfg.heldout_seed, heldout_fraction=heldout_fraction
            )
    seen = {(t.family, t.id) for t in tasks}
    tasks += [t for t in corpus_heldout if (t.family, t.id) not in seen]
    return _render(tasks, cfg)


def gate_items(cfg: TasksConfig, heldout_fraction: float) -> list[Item]:
    """The gate split's questions: ``gate_per_level`` held-out generated tasks per family and difficulty, drawn
    from ``gate_seed`` and leaving out every task of the reported suite (small levels may have fewer)."""
    tasks: list[TaskRecord] = []
    for family in cfg.families:
        for difficulty in range(1, cfg.max_difficulty + 1):
            reported = {
                t.id
                for t in heldout_set(
                    family, difficulty, cfg.heldout_per_level, seed=cfg.heldout_seed, heldout_fraction=heldout_fraction
                )
            }
            rng = random.Random(f"gate/{cfg.gate_seed}/{family}/{difficulty}")
            drawn = problems(
                family,
                difficulty,
                rng,
                cfg.gate_per_level + len(reported),
                heldout_fraction=heldout_fraction,
                heldout=True,
            )
            tasks += [t for t in drawn if t.id not in reported][: cfg.gate_per_level]
    return _render(tasks, cfg)


def _render(tasks: list[TaskRecord], cfg: TasksConfig) -> list[Item]:
    items = []
    for task in tasks:
        fam = family_of(task)
        for mode in cfg.modes:
            if fam.supports(task, mode):
                items.append(Item(task, mode, fam.render(task, mode, cfg.digit_format)))
    return items


def fingerprint(items: list[Item]) -> str:
    """Names the questions and their order: outcome tables compare question by question only when it matches."""
    keys = "\n".join(f"{i.task.family}/{i.task.difficulty}/{i.task.id}/{i.mode}" for i in items)
    return hashlib.sha256(keys.encode()).hexdigest()[:16]


def summarize(items: list[Item], passed: list[bool]) -> dict[str, Any]:
    """pass@1 per family, per family -> difficulty -> mode (with counts), and the per-question outcomes per family
    -> difficulty ("1" passed, "0" failed, in item order). Pure."""
    by_family: dict[str, list[bool]] = {}
    cells: dict[str, dict[str, dict[str, list[bool]]]] = {}
    outcomes: dict[str, dict[str, str]] = {}
    for item, ok in zip(items, passed, strict=True):
        fam, diff = item.task.family, str(item.task.difficulty)
        by_family.setdefault(fam, []).append(ok)
        cells.setdefault(fam, {}).setdefault(diff, {}).setdefault(item.mode, []).append(ok)
        levels = outcomes.setdefault(fam, {})
        levels[diff] = levels.get(diff, "") + ("1" if ok else "0")
    detail = {
        fam: {
            diff: {mode: {"pass_at_1": sum(v) / len(v), "n": len(v)} for mode, v in modes.items()}
            for diff, modes in sorted(diffs.items(), key=lambda kv: int(kv[0]))
        }
        for fam, diffs in cells.items()
    }
    return {"tasks": {fam: sum(v) / len(v) for fam, v in by_family.items()}, "detail": detail, "outcomes": outcomes}


def frontier(detail: dict[str, Any], mode: str, threshold: float = 0.9) -> dict[str, int]:
    """Per family, the largest difficulty whose pass@1 in ``mode`` is at least ``threshold`` (0 if none)."""
    out = {}
    for fam, diffs in detail.items():
        ok = [int(d) for d, modes in diffs.items() if mode in modes and modes[mode]["pass_at_1"] >= threshold]
        out[fam] = max(ok, default=0)
    return out


class TaskSuite:
    """A held-out task suite; call it with (model, tokenizer) for {family: pass@1}.

    ``TaskSuite(model, tokenizer) -> {family: pass@1}`` is the callable that
    `selfloop.train.evaluate` takes; the breakdown per difficulty and mode of the last
    call for a model is kept (``detail(model)``) for the manifest, the curriculum and the
    "mental math vs tool" table. ``split="gate"`` asks the gate split instead (``gate_items``;
    ``corpus_heldout`` is not used), whose ``table`` the gate compares.
    """

    def __init__(
        self,
        cfg: TasksConfig,
        judge: JudgeConfig,
        sandbox_source: Callable[[], AbstractContextManager[Any]],
        *,
        heldout_fraction: float,
        corpus_heldout: Iterable[TaskRecord] = (),
        split: Literal["reported", "gate"] = "reported",
    ):
        self.cfg = cfg
        self.judge = judge
        self.sandbox_source = sandbox_source
        self.items = (
            gate_items(cfg, heldout_fraction) if split == "gate" else build_items(cfg, heldout_fraction, corpus_heldout)
        )
        self._details: dict[int, dict[str, Any]] = {}

    def answers(self, model, tokenizer) -> list[str]:
        """The model's greedy answer to every item, decoded into what the checker sees."""
        out = generate(
            model,
            tokenizer,
            [i.prompt for i in self.items],
            chat=True,
            temperature=0,
            max_new_tokens=self.cfg.max_new_tokens,
            batch_size=EVAL_BATCH,
        )
        return [
            family_of(i.task).decode(i.task, texts[0], i.mode, self.cfg.digit_format)
            for i, texts in zip(self.items, out.texts, strict=True)
        ]

    def run(self, model, tokenizer) -> dict[str, Any]:
        if not self.items:
            return {"tasks": {}, "detail": {}, "outcomes": {}}
        answers = self.answers(model, tokenizer)
        candidates = [
            Candidate("task", a, task=i.task, metadata={"answer_kind": i.mode})
            for i, a in zip(self.items, answers, strict=True)
        ]
        with self.sandbox_source() as sandbox:
            outcomes = Pipeline(JudgeContext(self.judge, sandbox=sandbox), kinds=["task"]).judge_batch(candidates)
        return summarize(self.items, [o.accepted for o in outcomes])

    def __call__(self, model, tokenizer) -> dict[str, float]:
        result = self.run(model, tokenizer)
        self._details[id(model)] = result["detail"]
        return result["tasks"]

    def table(self, model, tokenizer) -> dict[str, Any]:
        """What the gate compares: pass@1 per family and the per-question outcomes, named by the questions'
        ``fingerprint``."""
        result = self.run(model, tokenizer)
        return {"items": fingerprint(self.items), "tasks": result["tasks"], "outcomes": result["outcomes"]}

    def detail(self, model) -> dict[str, Any]:
        """The per difficulty and mode breakdown of the last call for ``model`` ({} if none)."""
        return self._details.get(id(model), {})
