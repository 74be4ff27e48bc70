"""The shared plain data types every layer speaks: reasons, the split rule, task records, documents.

``Reason`` (a ``"code: detail"`` of why something was not taken), ``split_of`` (the held-out split, a pure function
of a document's key, so a document never moves between training and evaluation), ``TaskRecord`` / ``Variant`` (a
prompt verifiable without a human; its checker and test code run only in the sandbox, never here) and ``Doc``.

Pure: no I/O, no SQL, no model. Imports nothing of selfloop; everything above imports from here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# --------------------------------------------------------------------------- reasons


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


def code_of(stored: str | None) -> str:
    """The code part of a stored reason (``"too_short: 12 chars..." -> "too_short"``)."""
    if not stored:
        return ""
    return stored.split(":", 1)[0].strip()


# --------------------------------------------------------------------------- split


def split_of(key: str, heldout_fraction: float) -> str:
    """The key is the content hash; for tasks, family/difficulty/id."""
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if h / 2**32 < heldout_fraction else "train"


# --------------------------------------------------------------------------- tasks


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
        "label_source",
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
    """Only the shape is validated here. A task the model solved carries flat provenance
    fields in rework/, gathered into ``provenance``.
    """

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

    # A row of rework/tasks (selfloop.rework.writer) has every column in every row, for ``datasets``: an absent
    # field is "", the variants are JSON text. An empty checker, test, solution or answer means nothing anyway.
    @field_validator("checker", "tests", "solution", "answer", "variants", mode="before")
    @classmethod
    def _absent(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "":
            return None
        return json.loads(value) if info.field_name == "variants" and isinstance(value, str) else value

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


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Doc:
    """An active document as training and evaluation read it."""

    id: int
    origin: str  # orig | rework
    kind: str  # text | chat | task
    content: str
    n_chars: int
    hash: str
