"""Judge sets: lines of ``{"kind", "prompt", "a", "b"}`` (and ``"label"``, ``"why"`` to measure) as candidates,
their verdicts, and each judge's precision, recall and F1.

An item is B offered as a continuation of the prompt, A (or null) the original it must beat. "Accepted" is the
positive class: precision is the share of accepted items labelled good, recall the share of good items accepted.
Each judge of a kind's pipeline is measured on every item alone (not only on what the judges before it let
through), and the pipeline as it runs (stage by stage, stopping at the first reject).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfloop.errors import UsageError
from selfloop.judge.base import Candidate
from selfloop.judge.pipeline import Outcome, Pipeline

KINDS = ("text", "chat")
LABELS = ("good", "bad")


@dataclass(frozen=True)
class Item:
    kind: str
    prompt: str
    a: str | None
    b: str
    label: str | None = None
    why: str | None = None


def parse_items(lines: Iterable[str], *, where: str = "input", labelled: bool = False) -> list[Item]:
    """Items from JSONL text; a bad line is a UsageError naming its number and what is wrong."""
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{where}:{n}: not JSON ({e})") from None
        if not isinstance(rec, dict):
            raise UsageError(f"{where}:{n}: a line must be a JSON object")
        kind, prompt, a, b = rec.get("kind", "text"), rec.get("prompt", ""), rec.get("a"), rec.get("b")
        if kind not in KINDS:
            raise UsageError(f"{where}:{n}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(prompt, str) or not isinstance(b, str) or not (a is None or isinstance(a, str)):
            raise UsageError(f"{where}:{n}: 'prompt' and 'b' must be strings, 'a' a string or null")
        label = rec.get("label")
        if labelled and label not in LABELS:
            raise UsageError(f"{where}:{n}: 'label' must be one of {', '.join(LABELS)} (got {label!r})")
        why = rec.get("why")
        items.append(Item(kind, prompt, a, b, label, None if why is None else str(why)))
    return items


def reference_prompt(item: Item) -> str:
    """The text B continues: the prompt itself, or for a chat the user's turn then a newline."""
    return item.prompt if item.kind == "text" else item.prompt + "\n"


def candidate(item: Item) -> Candidate:
    meta = {"prompt": reference_prompt(item), "completion": item.b}
    if item.kind == "chat":
        messages = [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": item.b}]
        content = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
        return Candidate("chat", content, source=item.a, metadata=meta)
    return Candidate("text", item.prompt + item.b, source=item.a, metadata=meta)


@dataclass
class Counts:
    tp: int = 0  # accepted, good
    fp: int = 0  # accepted, bad
    fn: int = 0  # rejected, good
    tn: int = 0  # rejected, bad

    def add(self, accepted: bool, good: bool) -> None:
        if accepted:
            self.tp += good
            self.fp += not good
        else:
            self.fn += good
            self.tn += not good

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)

    def as_dict(self) -> dict[str, Any]:
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": r(self.precision),
            "recall": r(self.recall),
            "f1": r(self.f1),
            "good_accepted": f"{self.tp}/{self.tp + self.fn}",
            "bad_accepted": f"{self.fp}/{self.fp + self.tn}",
        }


@dataclass
class Report:
    items: int = 0
    pipeline: Counts = field(default_factory=Counts)
    judges: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_why: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (label, why) -> [accepted, total]
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # judge -> reason code -> rejections
    judge_by_why: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # judge -> label/why -> [acc, n]

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "pipeline": self.pipeline.as_dict(),
            "judges": {name: c.as_dict() for name, c in self.judges.items()},
            "accept_rate_by_why": [
                {"label": label, "why": why, "accepted": n, "total": total, "rate": round(n / total, 4)}
                for (label, why), (n, total) in sorted(self.by_why.items())
            ],
            "reasons": self.reasons,
            "judge_by_why": self.judge_by_why,
        }


def judge_items(pipeline: Pipeline, items: Sequence[Item]) -> list[Outcome]:
    """Each item on its own, as a batch of one: items are independent questions (a judge that dedups within a
    batch would otherwise reject the second item with the same B)."""
    return [pipeline.judge(candidate(i)) for i in items]


def evaluate(pipeline: Pipeline, items: Sequence[Item]) -> Report:
    """Precision, recall and F1 of the pipeline and of each of its judges alone, on labelled items."""
    report = Report(items=len(items))
    cands = [candidate(i) for i in items]
    for kind in sorted({i.kind for i in items}):
        idx = [n for n, i in enumerate(items) if i.kind == kind]
        for judge in pipeline.stages[kind]:
            # Items are independent questions: one batch where no verdict depends on the batch, else one by one.
            if judge.independent:
                verdicts = judge.judge_batch([cands[n] for n in idx])
            else:
                verdicts = [judge.judge(cands[n]) for n in idx]
            reasons = report.reasons.setdefault(judge.name, {})
            by_why = report.judge_by_why.setdefault(judge.name, {})
            for n, v in zip(idx, verdicts, strict=True):
                report.judges[judge.name].add(v.accepted, items[n].label == "good")
                if items[n].why is not None:
                    row = by_why.setdefault(f"{items[n].label}/{items[n].why}", [0, 0])
                    row[0] += v.accepted
                    row[1] += 1
                if not v.accepted:
                    code = v.reason.split(":", 1)[0].strip()
                    reasons[code] = reasons.get(code, 0) + 1
    # After the judges alone: a reference keeps the scores their batches computed, the pipeline reuses them.
    for item, outcome in zip(items, judge_items(pipeline, items), strict=True):
        good = item.label == "good"
        report.pipeline.add(outcome.accepted, good)
        if item.why is not None:
            row = report.by_why.setdefault((item.label or "", item.why), [0, 0])
            row[0] += outcome.accepted
            row[1] += 1
    return report
