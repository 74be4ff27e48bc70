"""How task documents train: a labelled task becomes one chat exchange per answer mode.

A task with a reference answer trains as (direct question, answer); with a reference program, as (program question,
program); with neither, as nothing (it is a verifiable prompt only). Documents of other kinds pass through unchanged.
Rendering happens when the training snapshot is taken, with ``[tasks]``, so training and the held-out loss see
exactly the formats the solver and the task suite use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from selfloop.config import TasksConfig
from selfloop.records import Doc, TaskRecord
from selfloop.tasks.families import FAMILIES, conversations, heldout_set


def training_docs(docs: Sequence[Doc], cfg: TasksConfig) -> list[Doc]:
    """``docs`` with every task document replaced by its chat exchanges (possibly none)."""
    out: list[Doc] = []
    for doc in docs:
        if doc.kind != "task":
            out.append(doc)
            continue
        task = TaskRecord.model_validate_json(doc.content)
        for messages in conversations(task, cfg.modes, cfg.digit_format):
            content = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
            out.append(
                Doc(doc.id, doc.origin, "chat", content, len(content), hashlib.sha256(content.encode()).hexdigest())
            )
    return out


def task_records(docs: Sequence[Doc]) -> list[TaskRecord]:
    """The task records among ``docs`` (e.g. the corpus's held-out tasks for the suite)."""
    return [TaskRecord.model_validate_json(d.content) for d in docs if d.kind == "task"]


def heldout_loss_docs(cfg: TasksConfig, heldout_fraction: float) -> list[Doc]:
    """The fixed held-out tasks of the generated families, labelled, as documents for the held-out loss.

    Evaluation only: these are the suite's own tasks, which never train. Difficulties
    above ``loss_max_difficulty`` (when set) are left out of the loss; pass@1 still
    measures them.
    """
    top = min(cfg.loss_max_difficulty or cfg.max_difficulty, cfg.max_difficulty)
    docs = []
    for family in cfg.families:
        for difficulty in range(1, top + 1):
            for task in heldout_set(
                family, difficulty, cfg.heldout_per_level, seed=cfg.heldout_seed, heldout_fraction=heldout_fraction
            ):
                labelled = FAMILIES[family].labelled(task)  # type: ignore[attr-defined]
                docs.append(Doc(0, "orig", "task", labelled.canonical_json(), 0, ""))
    return training_docs(docs, cfg)
