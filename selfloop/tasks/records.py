"""The task record: a prompt whose answer can be verified without a human.

A record carries at least one way to verify an answer: ``checker`` (Python source
defining ``check(answer: str) -> bool``), ``tests`` (Python test code for function
tasks) or ``answer`` (a reference answer). Checker and test code are model- or
user-supplied and are executed only inside the sandbox by the judge, never here:
this module validates shape only.

A record may also carry ``variants``: counterfactual instances of the same task,
each a ``substitute`` map from a literal of the prompt (an operand, a word) to a
replacement, with the checker or reference answer of the task so changed. The
task judge runs a program answer once as written and once per variant with its
literals replaced, so a program that prints the answer without computing it from
the inputs is caught (`selfloop.judge.task_judge`). Generated families add
variants to every problem; records without them (user task files) are judged on
the program as written only.

A JSONL line is a task record when it has both ``"family"`` and ``"prompt"``.
A task the model solved is written to ``rework/`` as a task record with its
answer and flat provenance fields (strategy, generation, verdicts, ...), which
are gathered into ``provenance`` here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Provenance fields of a rework record (see selfloop.rework.writer), kept under ``provenance``.
PROVENANCE_KEYS = frozenset(
    {
        "strategy",
        "generation",
        "cycle",
        "sources",
        "verdicts",
        "scores",
        "created_at",
        "kind",
        "candidate",
        "answer_kind",
        "rationalized",
        "completion",
    }
)


INT_LITERAL = re.compile(r"[0-9]+")


class Variant(BaseModel):
    """The task with some literals of its prompt replaced, and how to check an answer to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    substitute: dict[str, str] = Field(
        min_length=1, description="literal of the prompt -> its replacement in this variant"
    )
    checker: str | None = Field(
        None, description="Python source defining check(answer: str) -> bool for the variant; sandbox only"
    )
    answer: str | None = Field(None, description="the variant's reference answer")

    @model_validator(mode="after")
    def _well_formed(self) -> "Variant":
        if (self.checker is None) == (self.answer is None):
            raise ValueError("a variant needs exactly one of checker or answer")
        for old, new in self.substitute.items():
            if not old or not new:
                raise ValueError(f"substitute {old!r} -> {new!r}: literals must be non-empty")
            if old == new:
                raise ValueError(f"substitute {old!r} -> {new!r}: a variant must change the literal")
            # Program literals are matched as ints when the text is a number, so a
            # number must become a number (an int constant cannot become text).
            if INT_LITERAL.fullmatch(old) and not INT_LITERAL.fullmatch(new):
                raise ValueError(f"substitute {old!r} -> {new!r}: a number must be replaced by a number")
        return self


class TaskRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="stable identifier, unique within its family")
    family: str = Field(
        min_length=1, description="task family (arithmetic, string_ops, ...): pass@1 is tracked per family"
    )
    difficulty: int = Field(ge=0, description="0 = easiest")
    prompt: str = Field(min_length=1)
    checker: str | None = Field(None, description="Python source defining check(answer: str) -> bool; sandbox only")
    tests: str | None = Field(None, description="Python test code for function tasks; sandbox only")
    solution: str | None = Field(None, description="a known-good solution (for checking the checker)")
    answer: str | None = Field(None, description="reference answer")
    variants: list[Variant] | None = Field(
        None, description="counterfactual instances a program answer must also pass (hard-coding check)"
    )
    provenance: dict[str, Any] | None = Field(
        None, description="for model-solved records in rework/: who solved it, how, and the verdicts"
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_provenance(cls, data: Any) -> Any:
        if isinstance(data, dict) and PROVENANCE_KEYS & data.keys():
            data = dict(data)
            moved = {k: data.pop(k) for k in sorted(PROVENANCE_KEYS & data.keys())}
            data["provenance"] = {**(data.get("provenance") or {}), **moved}
        return data

    @model_validator(mode="after")
    def _verifiable(self) -> "TaskRecord":
        if self.checker is None and self.tests is None and self.answer is None:
            raise ValueError("a task needs at least one of checker, tests or answer")
        for i, variant in enumerate(self.variants or (), 1):
            missing = [old for old in variant.substitute if old not in self.prompt]
            if missing:
                raise ValueError(f"variant {i} substitutes {missing} which the prompt {self.prompt!r} does not contain")
        return self

    def canonical_json(self) -> str:
        """One spelling per record, so equal tasks hash equal."""
        return json.dumps(self.model_dump(exclude_none=True), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @property
    def split_key(self) -> str:
        # Keyed by identity, not text: fixing a typo in a held-out prompt must not
        # move the task into training.
        return f"task/{self.family}/{self.difficulty}/{self.id}"


def is_task_object(obj: dict[str, Any]) -> bool:
    return "family" in obj and "prompt" in obj
