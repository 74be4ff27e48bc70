"""``tool`` labels: the stdout of a program the model wrote, run in the sandbox, kept by key-free checks only.

A candidate program is kept when it parses, holds every input of its problem as a literal (so it computes from the
inputs rather than printing a remembered answer), runs to exit 0 within the sandbox's limits, prints an answer of
the right shape (``family.read``), and is invariant under the family's checks: the same program with its literals
replaced by those of each check problem (``selfloop.judge.substitute``) must print answers that combine into its
own. The interpreter computes; nothing here knows the answer.

Does not cover: two distinct programs agreeing (one greedy program per problem), or any language but Python.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from selfloop.frontier.family import Problem, ToolFamily
from selfloop.judge.substitute import NotParsed, parse, substitute
from selfloop.sandbox import Sandbox
from selfloop.sandbox.job import Job


@dataclass(frozen=True)
class Ran:
    stdout: str | None  # None: the program did not run to exit 0
    why: str = ""


class Runner(Protocol):
    def run(self, programs: Sequence[str]) -> list[Ran]: ...


class SandboxRunner:
    """Runs each program as its own sandbox job (``python main.py``), as many at once as the sandbox has workers."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def run(self, programs: Sequence[str]) -> list[Ran]:
        jobs = [Job(files={"main.py": p}, entry="main.py") for p in programs]
        with ThreadPoolExecutor(max_workers=max(1, self.sandbox.capacity)) as ex:
            verdicts = list(ex.map(self.sandbox.run, jobs))
        return [Ran(v.stdout) if v.passed else Ran(None, f"{v.status}: {v.reason}") for v in verdicts]


def literal_strings(tree: ast.Module) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is str}


@dataclass
class Attempt:
    """One problem's program and how far it got; ``verdict`` None while it passes everything so far."""

    problem: Problem
    program: str
    tree: ast.Module | None = None
    answer: str | None = None
    verdict: str | None = None


def tool_verdicts(
    family: ToolFamily,
    problems: Sequence[Problem],
    programs: Sequence[str],
    runner: Runner,
    *,
    trusted: int,
    rng: random.Random,
) -> list[Attempt]:
    """Per problem: its program's answer and None, or the first key-free check it fails (``tool:<check>``)."""
    attempts = [Attempt(p, text) for p, text in zip(problems, programs)]
    for a in attempts:
        try:
            a.tree = parse(a.program)
        except NotParsed:
            a.verdict = "tool:parse"
            continue
        if not set(family.literals(a.problem)) <= literal_strings(a.tree):
            a.verdict = "tool:literal"
    open_ = [a for a in attempts if a.verdict is None]
    for a, ran in zip(open_, runner.run([a.program for a in open_])):
        a.answer = None if ran.stdout is None else family.read(a.problem, ran.stdout)
        a.verdict = "tool:run" if ran.stdout is None else ("tool:shape" if a.answer is None else None)
    _check_variants([a for a in attempts if a.verdict is None], family, runner, trusted, rng)
    return attempts


def _check_variants(
    attempts: Sequence[Attempt], family: ToolFamily, runner: Runner, trusted: int, rng: random.Random
) -> None:
    """Run every attempt's program on its check problems (literals swapped in) and compare the combined answers."""
    planned = []  # (attempt, check, variant sources)
    for a in attempts:
        own = family.literals(a.problem)
        if len(set(own)) < len(own):
            a.verdict = "tool:ambiguous"  # two equal inputs: a swap could not tell them apart
            continue
        tree = a.tree
        if tree is None:  # not parsed: dropped before it ran
            continue
        try:
            for c in family.checks(a.problem, trusted, rng):
                sources = [substitute(tree, dict(zip(own, family.literals(q)))).source for q in c.problems]
                planned.append((a, c, sources))
        except NotParsed:  # parsed, but too deep to rewrite
            a.verdict = "tool:parse"
            planned = [x for x in planned if x[0] is not a]
    flat = [s for _, _, sources in planned for s in sources]
    outputs = iter(runner.run(flat))
    for a, c, sources in planned:
        answers = []
        for q in c.problems:
            ran = next(outputs)
            answers.append(None if ran.stdout is None else family.read(q, ran.stdout))
        if a.verdict is None and c.combine(answers) != a.answer:
            a.verdict = f"tool:check:{c.name}"
