"""The judge contract: what a judge receives (`Candidate`), what it returns
(`JudgeVerdict`), and what it may use (`JudgeContext`).

A judge looks at one candidate (the rework engine builds them) and accepts or
rejects it with a reason. Judges that need to run code use the shared sandbox
from the context; judges that need a model (perplexity, A-vs-B) take it from
``context.resources``, which the caller fills. Judges never write to the state
store; the caller records their verdicts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from selfloop.config import JudgeConfig
from selfloop.errors import SelfloopError

Kind = Literal["text", "chat", "python", "task"]
KINDS: tuple[str, ...] = ("text", "chat", "python", "task")


@dataclass(frozen=True)
class Candidate:
    """A piece of model output to judge.

    kind:     text | chat | python | task.
    content:  the candidate itself (text, JSON of a chat record, Python source,
              or the model's answer to a task).
    source:   the text it was derived from (a rewrite's original), for A-vs-B.
    task:     the task record for kind "task" (a `selfloop.records.TaskRecord`
              or a mapping with the same fields).
    metadata: free-form hints, e.g. ``answer_kind`` ("answer" | "program") for
              tasks or ``tests`` (test source) for Python candidates.
    """

    kind: Kind
    content: str
    source: str | None = None
    task: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeVerdict:
    judge: str
    status: Literal["accept", "reject"]
    score: float | None
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status == "accept"


def accept(judge: str, reason: str, score: float | None = None, **detail: Any) -> JudgeVerdict:
    return JudgeVerdict(judge, "accept", score, reason, dict(detail))


def reject(judge: str, reason: str, score: float | None = None, **detail: Any) -> JudgeVerdict:
    return JudgeVerdict(judge, "reject", score, reason, dict(detail))


@dataclass
class JudgeContext:
    """What judges may use. ``sandbox`` is a `selfloop.sandbox.Sandbox` (or None when
    no judge in use needs one); ``resources`` carries caller-provided objects such
    as the current model for scoring."""

    config: JudgeConfig
    sandbox: Any = None
    resources: dict[str, Any] = field(default_factory=dict)

    def require_sandbox(self, judge: str) -> Any:
        if self.sandbox is None:
            raise SelfloopError(f"judge {judge!r} runs code and needs a sandbox, but none was given")
        return self.sandbox


class Judge(ABC):
    """Subclass and set `name`; override `judge`, and `judge_batch` when batching pays off."""

    name: str = "?"
    # True when a candidate's verdict never depends on the others in its batch (no dedup within the batch).
    independent: bool = False

    def __init__(self, context: JudgeContext):
        self.context = context

    @abstractmethod
    def judge(self, candidate: Candidate) -> JudgeVerdict: ...

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        return [self.judge(c) for c in candidates]
