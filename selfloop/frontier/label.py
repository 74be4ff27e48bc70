"""Choosing frontier labels: who selects them (the label source), and what the answer key may do (only audit).

``self``: the model's greedy answer, kept only by model-internal signals: its format and length (``parse``), the
family's checks (equivalent prompts and decompositions answered by the same model must reproduce it), optionally a
vote of sampled answers and agreement with the previous generation. ``tool``: the stdout of a program the model
wrote for the problem, kept by key-free checks (``selfloop.frontier.tool``). ``oracle``: the generator's answer (an
answer key: supervision, reported as such). In every case the key then audits what was kept; nothing selects on the
audit.

Pure: the model is a ``Solver`` and the sandbox a ``Runner`` the caller passes in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from selfloop.frontier.family import Family, Problem, ToolFamily, writes_programs
from selfloop.frontier.tool import Runner, tool_verdicts

Source = Literal["self", "tool", "oracle"]
SOURCES: tuple[Source, ...] = ("self", "tool", "oracle")


class Solver(Protocol):
    def greedy(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]: ...

    def sample(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]: ...


@dataclass(frozen=True)
class SelfFilters:
    """The model-internal filters of ``self`` labels (all off = the ``unfiltered`` arm)."""

    checks: bool = True
    samples: int = 0
    vote_threshold: float = 0.7
    temperature: float = 0.7
    agree_previous: bool = False


@dataclass(frozen=True)
class Label:
    family: str
    problem: Problem
    prompt: str
    answer: str
    source: Source
    level: int
    audit_correct: bool  # the answer key's verdict: recorded, never read by selection
    program: str | None = None  # tool: the program whose stdout is the answer (trained on too)
    program_prompt: str | None = None  # tool: what the model was asked when it wrote ``program``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LabelStats:
    level: int
    source: str  # a Source, or several joined by "+" when a round used more than one
    candidates: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    audited_correct: int = 0
    greedy_correct: int = 0  # audit of every candidate's greedy answer, kept or not
    best_yield: float | None = None  # several sources: the best one's yield, which moves the curriculum

    @property
    def yield_(self) -> float:
        return self.kept / self.candidates if self.candidates else 0.0

    @property
    def audited_accuracy(self) -> float | None:
        return self.audited_correct / self.kept if self.kept else None

    def merge(self, other: LabelStats) -> None:
        self.candidates += other.candidates
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.audited_correct += other.audited_correct
        self.greedy_correct += other.greedy_correct

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.audited_accuracy
        return {
            "level": self.level,
            "source": self.source,
            "candidates": self.candidates,
            "kept": self.kept,
            "yield": round(self.yield_, 4),
            "curriculum_yield": round(self.yield_ if self.best_yield is None else self.best_yield, 4),
            "dropped": dict(self.dropped),
            "audited_label_accuracy": None if accuracy is None else round(accuracy, 4),
            "greedy_accuracy": round(self.greedy_correct / self.candidates, 4) if self.candidates else None,
        }


def label(
    family: Family,
    problems: Sequence[Problem],
    source: Source,
    solver: Solver,
    *,
    filters: SelfFilters,
    trusted: int,
    rng: random.Random,
    previous: Solver | None = None,
    runner: Runner | None = None,
    program_tokens: int = 160,
) -> tuple[list[Label], LabelStats]:
    """Label ``problems`` (all of one level) and keep those the source's filters accept."""
    level = family.level_of(problems[0])
    stats = LabelStats(level=level, source=source, candidates=len(problems))
    truth = [family.solve(p) for p in problems]
    greedy = [family.parse(p, text) for p, text in zip(problems, solver.greedy([family.prompt(p) for p in problems]))]
    stats.greedy_correct = sum(g == t for g, t in zip(greedy, truth))
    programs: list[tuple[str, str] | None] = [None] * len(problems)  # tool: (program prompt, program)
    if source == "oracle":
        answers: list[str | None] = list(truth)
        verdicts: list[str | None] = [None] * len(problems)
    elif source == "tool":
        if runner is None or not writes_programs(family):
            raise ValueError(f"tool labels need a sandbox runner and a family that writes programs ({family.name})")
        tool: ToolFamily = family  # type: ignore[assignment]
        asked = [tool.program_prompt(p) for p in problems]
        attempts = tool_verdicts(tool, problems, solver.greedy(asked, program_tokens), runner, trusted=trusted, rng=rng)
        answers, verdicts = [a.answer for a in attempts], [a.verdict for a in attempts]
        programs = [(q, a.program) for q, a in zip(asked, attempts)]
    else:
        answers = greedy
        verdicts = _self_verdicts(family, problems, greedy, solver, filters, trusted, rng, previous)
    kept = []
    for p, answer, verdict, right, program in zip(problems, answers, verdicts, truth, programs):
        if verdict is not None or answer is None:
            stats.dropped[verdict or "format"] += 1
            continue
        prompt, text = program or (None, None)
        kept.append(Label(family.name, p, family.prompt(p), answer, source, level, answer == right, text, prompt))
    stats.kept = len(kept)
    stats.audited_correct = sum(k.audit_correct for k in kept)
    return kept, stats


def _self_verdicts(
    family: Family,
    problems: Sequence[Problem],
    greedy: Sequence[str | None],
    solver: Solver,
    filters: SelfFilters,
    trusted: int,
    rng: random.Random,
    previous: Solver | None,
) -> list[str | None]:
    """Per problem: None when its greedy answer passes every enabled filter, else the first filter it fails."""
    verdicts: list[str | None] = ["format" if g is None else None for g in greedy]
    if filters.checks:
        checks = [family.checks(p, trusted, rng) if v is None else [] for p, v in zip(problems, verdicts)]
        asked = sorted({q for cs in checks for c in cs for q in c.problems})
        replies = dict(zip(asked, solver.greedy([family.prompt(q) for q in asked])))
        for i, cs in enumerate(checks):
            for c in cs:
                expected = c.combine([family.parse(q, replies[q]) for q in c.problems])
                if expected != greedy[i]:
                    verdicts[i] = f"check:{c.name}"
                    break
    if filters.samples:
        open_ = [i for i, v in enumerate(verdicts) if v is None]
        prompts = [family.prompt(problems[i]) for i in open_]
        draws = solver.sample(prompts, filters.samples, filters.temperature, rng.randrange(2**31))
        for i, texts in zip(open_, draws):
            agree = sum(family.parse(problems[i], t) == greedy[i] for t in texts)
            if agree < filters.vote_threshold * filters.samples:
                verdicts[i] = "vote"
    if filters.agree_previous and previous is not None:
        open_ = [i for i, v in enumerate(verdicts) if v is None]
        before = previous.greedy([family.prompt(problems[i]) for i in open_])
        for i, text in zip(open_, before):
            if family.parse(problems[i], text) != greedy[i]:
                verdicts[i] = "previous"
    return verdicts
