"""The task record: a prompt whose answer can be verified without a human.

A record carries at least one way to verify an answer: ``checker`` (Python source
defining ``check(answer: str) -> bool``), ``tests`` (Python test code for function
tasks) or ``answer`` (a reference answer). Checker and test code are model- or
user-supplied and are executed only inside the sandbox by the judge, never here:
this module validates shape only.

A JSONL line is a task record when it has both ``"family"`` and ``"prompt"``.
A task the model solved is written to ``rework/`` as a task record with its
answer and flat provenance fields (strategy, generation, verdicts, ...), which
are gathered into ``provenance`` here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


# Provenance fields of a rework record (see selfloop.rework.writer), kept under ``provenance``.
PROVENANCE_KEYS = frozenset({"strategy", "generation", "cycle", "sources", "verdicts", "scores", "created_at", "kind",
                             "candidate", "answer_kind", "rationalized", "completion"})


class TaskRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="stable identifier, unique within its family")
    family: str = Field(min_length=1, description="task family (arithmetic, string_ops, ...): pass@1 is tracked per family")
    difficulty: int = Field(ge=0, description="0 = easiest")
    prompt: str = Field(min_length=1)
    checker: str | None = Field(None, description="Python source defining check(answer: str) -> bool; sandbox only")
    tests: str | None = Field(None, description="Python test code for function tasks; sandbox only")
    solution: str | None = Field(None, description="a known-good solution (for checking the checker)")
    answer: str | None = Field(None, description="reference answer")
    provenance: dict[str, Any] | None = Field(None, description="for model-solved records in rework/: who solved it, how, and the verdicts")

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
