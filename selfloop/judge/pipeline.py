"""Judge pipelines: per candidate kind, the judges named in `[judge]` run in order
and a candidate stops at its first reject.

Judging is stage-wise over a batch (every surviving candidate goes through judge
1, then judge 2, ...) so a judge can batch its work: model scoring in one
forward pass, sandbox jobs spread over the warm pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from selfloop.errors import ConfigError
from selfloop.judge import registry
from selfloop.judge.base import KINDS, Candidate, Judge, JudgeContext, JudgeVerdict


@dataclass(frozen=True)
class Outcome:
    """All verdicts a candidate collected; accepted when every judge accepted."""

    candidate: Candidate
    verdicts: tuple[JudgeVerdict, ...]

    @property
    def accepted(self) -> bool:
        return all(v.accepted for v in self.verdicts)

    @property
    def reason(self) -> str:
        for v in self.verdicts:
            if not v.accepted:
                return f"{v.judge}: {v.reason}"
        return "accepted by " + ", ".join(v.judge for v in self.verdicts) if self.verdicts else "no judges configured"


class Pipeline:
    def __init__(self, context: JudgeContext, kinds: Iterable[str] = KINDS):
        self.context = context
        self.stages: dict[str, list[Judge]] = {}
        built: dict[str, Judge] = {}  # one instance per judge name, shared across kinds
        for kind in kinds:
            if kind not in KINDS:
                raise ConfigError(f"unknown candidate kind {kind!r} (known: {', '.join(KINDS)})")
            names: list[str] = getattr(context.config, kind)
            for name in names:
                if name not in built:
                    built[name] = registry.create(name, context)
            self.stages[kind] = [built[name] for name in names]

    def judge(self, candidate: Candidate) -> Outcome:
        return self.judge_batch([candidate])[0]

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[Outcome]:
        verdicts: list[list[JudgeVerdict]] = [[] for _ in candidates]
        for kind in {c.kind for c in candidates}:
            if kind not in self.stages:
                raise ConfigError(f"this pipeline was built without the {kind!r} kind")
            alive = [i for i, c in enumerate(candidates) if c.kind == kind]
            for judge in self.stages[kind]:
                if not alive:
                    break
                results = judge.judge_batch([candidates[i] for i in alive])
                for i, v in zip(alive, results, strict=True):
                    verdicts[i].append(v)
                alive = [i for i, v in zip(alive, results, strict=True) if v.accepted]
        return [Outcome(c, tuple(v)) for c, v in zip(candidates, verdicts, strict=True)]
