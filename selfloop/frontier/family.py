"""The family plugin: what a generated task family provides, and how config names one.

A family makes problems by level (``sample``), shows them (``prompt``), reads an answer (``parse``: the format and
length check), labels them for generation 0 and audits (``solve``: the generator, which knows the answer), and
declares ``checks``: equivalent prompts or decompositions into easier problems whose answers, combined without
computing the answer, must reproduce a label. ``checks`` is what lets a model label its own frontier.

A ``ToolFamily`` also lets the model answer by writing a Python program (the ``tool`` label source): it shows the
program prompt, gives generation 0 a reference program for each labelled problem, names the inputs a program must
hold as literals, and reads a program's stdout into an answer (``read``: shape only, it knows no answer).

Does not cover: any model (``selfloop.frontier.engine``), the choice of labels (``selfloop.frontier.label``) or
finding a family by name (``selfloop.frontier.families.load_family``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Problem = tuple[Any, ...]


@dataclass(frozen=True)
class Check:
    """Problems to ask the same model, and how their answers combine into what the label must be.

    ``combine`` gets the parsed answers (None where one did not parse) and returns the expected label, or None when
    the answers are inconsistent. It may pick, cut and join answer digits; it never computes the answer itself.
    """

    name: str
    problems: tuple[Problem, ...]
    combine: Callable[[Sequence[str | None]], str | None]


@runtime_checkable
class Family(Protocol):
    name: str
    alphabet: str  # every character a prompt or an answer may contain

    def sample(self, level: int, rng: random.Random) -> Problem: ...

    def level_of(self, problem: Problem) -> int: ...

    def prompt(self, problem: Problem) -> str: ...

    def solve(self, problem: Problem) -> str: ...

    def parse(self, problem: Problem, text: str) -> str | None: ...

    def checks(self, problem: Problem, trusted: int, rng: random.Random) -> list[Check]: ...


@runtime_checkable
class ToolFamily(Family, Protocol):
    def program_prompt(self, problem: Problem) -> str: ...

    def program(self, problem: Problem) -> str: ...

    def literals(self, problem: Problem) -> tuple[str, ...]: ...

    def read(self, problem: Problem, stdout: str) -> str | None: ...


TOOL_METHODS = ("program_prompt", "program", "literals", "read")


def writes_programs(family: Family) -> bool:
    """Can the model answer this family's problems with programs (the ``tool`` source)?"""
    return all(hasattr(family, m) for m in TOOL_METHODS)
