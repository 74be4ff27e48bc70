"""The ``solve`` strategy: best-of-n answers to verifiable tasks (rejection-sampling fine-tuning).

The champion samples ``samples_per_task`` answers (direct and/or as a program) to generated problems near each
family's curriculum level and to corpus tasks with no worked answer; each is judged by the ``task`` pipeline. Correct
ones become chat training records (STaR, ReST-EM); correct and wrong ones of a task, preference pairs. Unsolved tasks
with a reference answer are retried with the answer as a hint (STaR rationalization). Held-out problems are never drawn.

Does not cover: judging (``selfloop.judge``), writing rework files (``phase``).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from selfloop.config import ReworkConfig, TasksConfig
from selfloop.judge import Candidate
from selfloop.model.generate import generate
from selfloop.records import TaskRecord
from selfloop.rework.strategies import Draft
from selfloop.store import Store, candidates
from selfloop.store.corpus import has_task_documents, task_documents
from selfloop.tasks.curriculum import current_levels
from selfloop.tasks.families import FAMILIES, family_of, problems

STRATEGY = "solve"


@dataclass(frozen=True)
class SolveDraft(Draft):
    """A draft answer to a task; ``meta`` is what the task judge needs (stored with the candidate)."""

    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ask:
    """One question to sample: a task in one answer mode, as the model sees it."""

    task: TaskRecord
    source_ids: tuple[int, ...]
    mode: str
    prompt: str  # the user turn, unhinted
    hint: str = ""  # appended to the user turn for a rationalization retry


def corpus_tasks(store: Store) -> list[tuple[int, TaskRecord]]:
    """Active train-split task documents of orig/ (held-out ones are never solved for training)."""
    return [(doc_id, TaskRecord.model_validate_json(content)) for doc_id, content in task_documents(store)]


def plan_asks(
    cfg: TasksConfig,
    levels: dict[str, int],
    corpus: Sequence[tuple[int, TaskRecord]],
    n_asks: int,
    rng: random.Random,
    heldout_fraction: float,
) -> list[Ask]:
    """About ``n_asks`` questions, shared equally between the generated families and the corpus's unsolved tasks.

    Generated problems come from each family at its curriculum level and the levels just
    below; each (task, mode) is asked both ways the config allows. Held-out problems are
    never drawn (the same split rule as ingest), so they never reach training.
    """
    open_corpus = []
    for doc_id, task in corpus:
        fam = family_of(task)
        for mode in cfg.modes:
            if fam.supports(task, mode) and not fam.target(task, mode, cfg.digit_format):
                open_corpus.append(Ask(task, (doc_id,), mode, fam.render(task, mode, cfg.digit_format)))
    sources = len(cfg.families) + (1 if open_corpus else 0)
    if not sources or n_asks <= 0:
        return []
    share = math.ceil(n_asks / sources)
    asks: list[Ask] = []
    for family in cfg.families:
        level = levels.get(family, 1)
        lowest = max(1, level - cfg.solve_window + 1)
        fam = FAMILIES[family]
        modes = list(cfg.modes)
        wanted = math.ceil(share / len(modes))
        made: list[TaskRecord] = []
        for _ in range(wanted):
            made += problems(
                family, rng.randint(lowest, level), rng, 1, heldout_fraction=heldout_fraction, heldout=False
            )
        for task in made:
            asks += [Ask(task, (), m, fam.render(task, m, cfg.digit_format)) for m in modes if fam.supports(task, m)]
    if open_corpus:
        asks += rng.sample(open_corpus, min(share, len(open_corpus)))
    return asks[:n_asks] if len(asks) > n_asks else asks


def draft(ask: Ask, completion: str, cfg: TasksConfig) -> SolveDraft:
    """A candidate from one sample: the exchange to train on, and what the judge checks."""
    text = completion.strip()
    messages = [{"role": "user", "content": ask.prompt}, {"role": "assistant", "content": text}]
    meta = {
        "task": ask.task.model_dump(exclude_none=True),
        "answer_kind": ask.mode,
        "answer": family_of(ask.task).decode(ask.task, text, ask.mode, cfg.digit_format),
        "rationalized": bool(ask.hint),
    }
    seen = ask.prompt + ask.hint
    return SolveDraft(
        STRATEGY,
        "task",
        ask.source_ids,
        json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True),
        seen,
        text,
        None,
        meta,
    )


def sample(
    asks: Sequence[Ask], cfg: TasksConfig, rc: ReworkConfig, model, tokenizer, seed: int
) -> tuple[list[SolveDraft], dict[str, Any]]:
    """``samples_per_task`` samples per question (chat-rendered, batched)."""
    if not asks:
        return [], {"tokens": 0, "seconds": 0.0}
    result = generate(
        model,
        tokenizer,
        [a.prompt + a.hint for a in asks],
        chat=True,
        n=cfg.samples_per_task,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=rc.top_p,
        seed=seed,
        batch_size=rc.batch_size,
    )
    drafts = [draft(a, text, cfg) for a, texts in zip(asks, result.texts, strict=True) for text in texts]
    return drafts, {"tokens": sum(sum(t) for t in result.new_tokens), "seconds": result.seconds}


def solve_drafts(
    cfg: TasksConfig,
    rc: ReworkConfig,
    store: Store,
    count: int,
    model,
    tokenizer,
    rng: random.Random,
    heldout_fraction: float,
) -> tuple[list[SolveDraft], dict[str, Any]]:
    """This cycle's solve candidates (at most ``count``), from the curriculum levels and the corpus."""
    levels = current_levels(store, cfg)
    asks = plan_asks(cfg, levels, corpus_tasks(store), math.ceil(count / cfg.samples_per_task), rng, heldout_fraction)
    drafts, stats = sample(asks, cfg, rc, model, tokenizer, rng.randrange(2**31))
    return drafts[:count], {**stats, "levels": levels, "asks": len(asks)}


def has_tasks(cfg: TasksConfig, store: Store) -> bool:
    return cfg.enabled and (bool(cfg.families) or has_task_documents(store))


def candidate_of(row: Any) -> Candidate:
    """The judge's view of a stored solve candidate: the decoded answer, its task and answer mode."""
    meta = json.loads(row["meta"])
    return Candidate(
        kind="task",
        content=meta["answer"],
        task=meta["task"],
        metadata={
            "answer_kind": meta["answer_kind"],
            "prompt": row["prompt"] or "",
            "completion": row["completion"] or "",
        },
    )


# --------------------------------------------------------------------------- after judging


def rework_record(row: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    """An accepted sample as a task record: the task with the model's answer (direct) or program as its worked
    answer, and where it came from. The task's checker selected it, so its ``label_source`` is ``oracle``.

    Written to rework/ and ingested as a task document, it trains like a labelled
    task of orig/ (`selfloop.tasks.training`): exact-deduplicated only, never
    through the prose filters that short answers would fail.
    """
    meta = json.loads(row["meta"])
    record = {"variants": None} | {
        k: v for k, v in meta["task"].items() if k not in ("answer", "solution", "provenance")
    }
    completion = json.loads(row["content"])["messages"][1]["content"]
    if meta["answer_kind"] == "answer":
        record["answer"] = meta["answer"]
    else:
        record["solution"] = completion
    # Flat, as every rework record (selfloop.rework.writer); TaskRecord gathers these under ``provenance``.
    record.update(provenance, answer_kind=meta["answer_kind"], rationalized=meta["rationalized"], completion=completion)
    TaskRecord.model_validate(record)
    return record


def distinct_rows(rows: Sequence[Any]) -> list[Any]:
    """One accepted sample per task, mode and completion: best-of-n keeps distinct solutions, not copies."""
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for r in rows:
        meta = json.loads(r["meta"])
        key = (meta["task"]["family"], meta["task"]["id"], meta["answer_kind"], r["completion"] or "")
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _groups(store: Store, cycle_id: int) -> dict[tuple[str, str, str], list[Any]]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for r in candidates.judged(store, cycle_id, STRATEGY):
        meta = json.loads(r["meta"])
        groups.setdefault((meta["task"]["family"], meta["task"]["id"], meta["answer_kind"]), []).append((r, meta))
    return groups


def record_pairs(store: Store, cycle_id: int) -> int:
    """Correct vs wrong samples of the same task and mode as preference pairs (replacing the cycle's earlier ones)."""
    pairs = []
    for rows in _groups(store, cycle_id).values():
        good = [(r, m) for r, m in rows if r["status"] == "accepted"]
        bad = {r["completion"]: r for r, m in rows if r["status"] == "rejected" and not m["rationalized"]}
        if not good or not bad:
            continue
        chosen, meta = good[0]
        prompt = json.loads(chosen["content"])["messages"][0]["content"]
        pairs += [
            (prompt, chosen["completion"], completion) for completion in bad if completion != chosen["completion"]
        ]
    candidates.replace_pairs(store, cycle_id, "task", pairs)
    return len(pairs)


def unsolved_with_answer(store: Store, cycle_id: int, cfg: TasksConfig) -> list[Ask]:
    """Questions of this cycle with a reference answer where no sample was accepted, with their hint."""
    asks = []
    for (_, _, mode), rows in _groups(store, cycle_id).items():
        if any(r["status"] == "accepted" or m["rationalized"] for r, m in rows):
            continue
        task = TaskRecord.model_validate(rows[0][1]["task"])
        if task.answer is None:
            continue
        fam = family_of(task)
        shown = fam.target(task, "answer", cfg.digit_format) if fam.supports(task, "answer") else None
        hint = f"\nhint: {shown}" if mode == "answer" and shown else f"\nhint: it prints {task.answer}"
        prompt = json.loads(rows[0][0]["content"])["messages"][0]["content"]
        source_ids = tuple(json.loads(rows[0][0]["source_ids"]))
        asks.append(Ask(task, source_ids, mode, prompt, hint))
    return asks


def copies_hint(d: SolveDraft) -> bool:
    """A hinted program that contains the hinted answer literally prints it rather than computing it."""
    answer = d.meta["task"].get("answer") or ""
    return d.meta["rationalized"] and d.meta["answer_kind"] == "program" and len(answer) > 1 and answer in d.completion


def rationalize(
    cfg: TasksConfig, rc: ReworkConfig, store: Store, cycle_id: int, model, tokenizer, seed: int
) -> list[SolveDraft]:
    """Hinted retries for this cycle's unsolved tasks that have a reference answer (none if already made).

    Accepted hinted samples train on the question *without* the hint and are marked
    ``rationalized`` in provenance. A hinted program that merely prints the hinted answer
    is not kept (``copies_hint``): it would teach copying, not computing.
    """
    if not cfg.rationalize:
        return []
    if candidates.has_rationalized(store, cycle_id, STRATEGY):
        return []  # a resumed judge phase: the retries are stored already
    drafts, _ = sample(unsolved_with_answer(store, cycle_id, cfg), cfg, rc, model, tokenizer, seed)
    return [d for d in drafts if not copies_hint(d)]
