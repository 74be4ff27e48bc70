"""The rework and judge phases of a cycle.

``rework`` samples candidates per strategy and stores all of the cycle's as *pending* in one transaction (sampling
is seeded by the cycle, so a crash before regenerates the same ones and a crash after never duplicates them).
``judge`` runs each pending candidate through its kind's pipeline (one transaction per candidate, so a resumed phase
re-judges only what is still pending), refuses a strategy's batch below ``judge.diversity_floor``, then writes
accepted candidates to ``corpus/rework/`` (atomic, append-only, with provenance) and ingests them.
Nothing reaches rework unjudged: only candidates whose every verdict is an accept are written.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selfloop.config import Config, ProjectPaths
from selfloop.ingest.ingestor import Ingestor
from selfloop.judge import Candidate, JudgeContext, Outcome, Pipeline
from selfloop.judge.reference import text_resources
from selfloop.model.generate import generate
from selfloop.rework import diversity, solve
from selfloop.rework.strategies import (
    Draft,
    Prompt,
    Source,
    assemble,
    instruction_mode,
    plan_budget,
    rewrite_prompts,
    synthesize_prompts,
)
from selfloop.rework.writer import PAIRS, rework_file, write_records
from selfloop.store import Store, candidates
from selfloop.store.corpus import rework_sources

log = logging.getLogger(__name__)

JUDGE_BATCH = 64


def load_sources(store: Store) -> list[Source]:
    """Training documents the model may rework: orig and earlier rework, never held-out ones."""
    return [
        Source(r["id"], "python" if r["kind"] == "text" and r["format"] == "py" else r["kind"], r["content"])
        for r in rework_sources(store)
    ]


# --------------------------------------------------------------------------- rework


def generate_drafts(
    cfg: Config, sources: list[Source], model: Any, tokenizer: Any, cycle_id: int, store: Store | None = None
) -> tuple[list[Draft], dict[str, Any]]:
    """Sample this cycle's candidates from the model. Deterministic for a cycle.

    With ``store`` (its curriculum levels and task documents) the solve share
    goes to verifiable tasks; without one it goes to the other strategies.
    """
    rc = cfg.rework
    budget = plan_budget(rc, have_tasks=store is not None and solve.has_tasks(cfg.tasks, store))
    rng = random.Random(rc.seed * 1_000_003 + cycle_id)
    context = getattr(model.config, "max_position_embeddings", None) or cfg.model.n_positions

    def render_chat(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # Python sources are reworked like text, then judged as Python (they must still compile and run).
    text_like = [Source(s.id, "text", s.content) if s.kind == "python" else s for s in sources]
    python_ids = {s.id for s in sources if s.kind == "python"}
    # An instruct model is asked through its chat template; a scratch model continues prefixes.
    instructed = instruction_mode(rc, getattr(tokenizer, "chat_template", None))
    plans: list[tuple[str, list[Prompt]]] = [
        (
            "rewrite",
            rewrite_prompts(text_like, budget["rewrite"], rc, context, rng, render_chat, instructed=instructed),
        ),
        (
            "synthesize",
            synthesize_prompts(
                text_like, budget["synthesize"], rc, rng, render_chat=render_chat if instructed else None
            ),
        ),
    ]
    drafts: list[Draft] = []
    stats: dict[str, Any] = {"budget": budget, "tokens": 0, "seconds": 0.0, "instructed": instructed}
    for strategy, prompts in plans:
        if not prompts:
            continue
        result = generate(
            model,
            tokenizer,
            [p.text for p in prompts],
            n=rc.samples_per_prompt,
            max_new_tokens=rc.max_new_tokens,
            temperature=rc.temperature,
            top_p=rc.top_p,
            seed=rng.randrange(2**31),
            batch_size=rc.batch_size,
        )
        stats["tokens"] += sum(sum(t) for t in result.new_tokens)
        stats["seconds"] += result.seconds
        assembled = [assemble(p, text) for p, samples in zip(prompts, result.texts) for text in samples]
        made = [d for d in assembled if d is not None]
        if len(made) < len(assembled):  # question/answer replies not in that form
            stats["unparsed"] = stats.get("unparsed", 0) + len(assembled) - len(made)
        for d in made[: budget[strategy]]:
            if d.kind == "text" and set(d.source_ids) & python_ids:
                d = Draft(d.strategy, "python", d.source_ids, d.content, d.prompt, d.completion, d.original)
            drafts.append(d)
        if store is not None:
            store.set_progress("rework", len(drafts), sum(budget.values()), "candidates")
    if budget["solve"] and store is not None:
        solved, solve_stats = solve.solve_drafts(
            cfg.tasks, rc, store, budget["solve"], model, tokenizer, rng, cfg.ingest.heldout_fraction
        )
        drafts += solved
        stats["tokens"] += solve_stats["tokens"]
        stats["seconds"] += solve_stats["seconds"]
        stats["solve"] = {"asks": solve_stats["asks"], "levels": solve_stats["levels"]}
    stats["tokens_per_s"] = round(stats["tokens"] / stats["seconds"], 1) if stats["seconds"] else 0.0
    return drafts, stats


def store_drafts(store: Store, cycle_id: int, generation: int, drafts: list[Draft]) -> int:
    """All of a cycle's candidates as pending, in one transaction (so never half of them).

    0 when the cycle's candidates are stored already (a resumed phase).
    """
    return candidates.insert_candidates(store, cycle_id, generation, drafts, unless_stored=True)


def run_rework(cfg: Config, store: Store, cycle_id: int, model_source: Any) -> dict[str, Any]:
    """The rework phase: generate and store this cycle's candidates."""
    existing = candidates.count(store, cycle_id)
    if existing:
        return {"candidates": existing, "resumed": True}
    sources = load_sources(store)
    if not sources and not solve.has_tasks(cfg.tasks, store):
        return {"candidates": 0, "skipped": "no training documents to rework"}
    with model_source() as loaded:
        drafts, stats = generate_drafts(cfg, sources, loaded.model, loaded.tokenizer, cycle_id, store)
        generation = loaded.generation
    n = store_drafts(store, cycle_id, generation, drafts)
    store.clear_progress("rework")
    by_strategy = Counter(d.strategy for d in drafts)
    store.event(
        "rework",
        f"cycle {cycle_id}: generation {generation} wrote {n} candidates "
        f"({', '.join(f'{k} {v}' for k, v in by_strategy.items()) or 'none'}) at {stats['tokens_per_s']} tokens/s",
        cycle=cycle_id,
        generation=generation,
        **stats,
    )
    return {"candidates": n, "by_strategy": dict(by_strategy), "writer_generation": generation, **stats}


# --------------------------------------------------------------------------- judge


def _candidate(row: Any) -> Candidate:
    if row["strategy"] == solve.STRATEGY:
        return solve.candidate_of(row)
    meta = {
        "prompt": judged_prompt(row),
        "completion": row["completion"] or "",
        "source_ids": json.loads(row["source_ids"] or "[]"),
    }
    return Candidate(kind=row["kind"], content=row["content"], source=row["original"], metadata=meta)


def judged_prompt(row: Any) -> str:
    """What A versus B conditions A and B on: the text before B in its document. For an instructed rewrite that is
    nothing (B replaces the whole passage), not the request, which holds A verbatim: a model reference would find A
    likely by copying it. The request stays the prompt of the preference pair."""
    content, completion = row["content"] or "", row["completion"] or ""
    if row["kind"] == "text" and completion and content.endswith(completion):
        return content[: len(content) - len(completion)]
    return row["prompt"] or ""


def record_outcome(store: Store, row: Any, outcome: Outcome, cycle_id: int) -> None:
    """Verdicts, status and (for A vs B) the preference pair of one candidate: one transaction."""
    pair = None
    ab = next((v for v in outcome.verdicts if v.judge == "a_vs_b"), None)
    if ab is not None and row["original"] is not None and row["completion"]:
        chosen, rejected = (row["completion"], row["original"]) if ab.accepted else (row["original"], row["completion"])
        pair = (row["prompt"] or "", chosen, rejected)
    candidates.record_outcome(
        store, cycle_id, row["id"], outcome.verdicts, accepted=outcome.accepted, reason=_reason_code(outcome), pair=pair
    )


def _reason_code(outcome: Outcome) -> str:
    """``judge: code: detail`` becomes ``judge/code`` so rejections count by reason."""
    if outcome.accepted:
        return "accepted"
    for v in outcome.verdicts:
        if not v.accepted:
            return f"{v.judge}/{v.reason.split(':', 1)[0].strip()}"
    return "rejected"


def run_judge(
    cfg: Config, paths: ProjectPaths, store: Store, cycle_id: int, model_source: Any, sandbox_source: Any
) -> dict[str, Any]:
    """The judge phase: verdicts for pending candidates, the diversity guard, then write and ingest accepted ones."""
    pending = candidates.pending(store, cycle_id)
    ingestor = Ingestor(cfg.ingest, cfg.watch, paths, store)
    if pending:
        kinds = sorted({r["kind"] for r in pending})
        needs_sandbox = any("python" in getattr(cfg.judge, k) or "task" in getattr(cfg.judge, k) for k in kinds)
        with model_source() as loaded, sandbox_source() if needs_sandbox else _nothing() as sandbox:
            # No judge is the author: the model that wrote the candidates is not among the judges' resources;
            # A versus B scores with the reference of judge.reference (built from orig/ only).
            ctx = JudgeContext(
                cfg.judge,
                sandbox=sandbox,
                resources={
                    "corpus": ingestor,
                    "ingest_config": cfg.ingest,
                    **text_resources(cfg.judge, paths, store, kinds),
                },
            )
            pipeline = Pipeline(ctx, kinds=kinds)
            for start in range(0, len(pending), JUDGE_BATCH):
                rows = pending[start : start + JUDGE_BATCH]
                for row, outcome in zip(rows, pipeline.judge_batch([_candidate(r) for r in rows])):
                    record_outcome(store, row, outcome, cycle_id)
            _judge_rationalized(cfg, store, cycle_id, loaded, pipeline, sandbox_source)
    solve.record_pairs(store, cycle_id)
    figures = admit_by_diversity(store, cycle_id, cfg.judge.diversity_floor)
    written = write_accepted(paths, store, cycle_id)
    # Accepted candidates of an earlier cycle that failed before writing them (a full disk,
    # say) are written now: a failed cycle is not resumed, but what it accepted is not lost.
    for earlier in candidates.unwritten_cycles(store, other_than=cycle_id):
        written += write_accepted(paths, store, earlier)
    for path in written:
        ingestor.ingest_path(path)
    pairs = write_pairs(paths, store, cycle_id)
    counts = {f"{status}:{reason}": n for (status, reason), n in candidates.counts_by_reason(store, cycle_id).items()}
    accepted = candidates.count(store, cycle_id, "accepted")
    store.event(
        "judged",
        f"cycle {cycle_id}: {accepted} accepted of {sum(counts.values())} candidates",
        cycle=cycle_id,
        counts=counts,
    )
    return {
        "accepted": accepted,
        "counts": counts,
        "diversity": figures,
        "files": [_shown(paths, p) for p in written],
        "pairs": [_shown(paths, p) for p in pairs],
    }


def _shown(paths: ProjectPaths, path: Path) -> str:
    return str(path.relative_to(paths.root)) if path.is_relative_to(paths.root) else str(path)


def _judge_rationalized(
    cfg: Config, store: Store, cycle_id: int, loaded: Any, pipeline: Any, sandbox_source: Any
) -> None:
    """STaR rationalization: hinted retries of unsolved tasks with a reference answer, stored then judged."""
    drafts = solve.rationalize(
        cfg.tasks,
        cfg.rework,
        store,
        cycle_id,
        loaded.model,
        loaded.tokenizer,
        seed=cfg.rework.seed * 1_000_003 + cycle_id + 1,
    )
    if not drafts:
        return
    candidates.insert_candidates(store, cycle_id, loaded.generation, drafts)
    rows = candidates.pending(store, cycle_id)
    if "task" not in pipeline.stages:
        pipeline = Pipeline(pipeline.context, kinds=["task"])
    for start in range(0, len(rows), JUDGE_BATCH):
        chunk = rows[start : start + JUDGE_BATCH]
        for row, outcome in zip(chunk, pipeline.judge_batch([_candidate(r) for r in chunk])):
            record_outcome(store, row, outcome, cycle_id)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def admit_by_diversity(store: Store, cycle_id: int, floor: float) -> dict[str, Any]:
    """Reject a strategy's whole accepted batch when it is not diverse enough (the collapse guard)."""
    figures: dict[str, Any] = {}
    for strategy in candidates.unwritten_strategies(store, cycle_id):
        if strategy == solve.STRATEGY:
            continue  # verified answers to distinct generated problems: correctness, not phrasing, is what counts
        rows = candidates.accepted(store, cycle_id, strategy)
        div = diversity.measure([r["content"] for r in rows])
        ok, reason = diversity.admit(div, floor)
        figures[strategy] = {**div.as_dict(), "admitted": ok}
        if not ok:
            candidates.reject(store, [r["id"] for r in rows], reason.split(":")[0])
            store.event(
                "collapse_guard",
                f"cycle {cycle_id}: {strategy} batch not admitted ({reason})",
                cycle=cycle_id,
                **div.as_dict(),
            )
    return figures


def write_accepted(paths: ProjectPaths, store: Store, cycle_id: int) -> list[Path]:
    """One rework file per kind and strategy with every accepted candidate of the cycle and its provenance."""
    written = []
    rows = candidates.accepted(store, cycle_id)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((_dataset_kind(r), r["strategy"]), []).append(r)
    for (kind, strategy), group in groups.items():
        path = rework_file(paths.rework, kind, group[0]["generation"], strategy, cycle_id)
        if all(r["rework_path"] for r in group) and path.exists():
            continue
        kept = solve.distinct_rows(group) if strategy == solve.STRATEGY else group
        records = [_record(store, r, cycle_id) for r in kept]
        write_records(path, records, kind=kind)  # False when a resumed phase finds the file already whole
        candidates.mark_written(store, [r["id"] for r in group], str(path))
        written.append(path)
    return written


def label_source(kind: str) -> str:
    """Who selected a candidate of this kind (README, "Where a label comes from"): a task answer is checked by a
    checker or tests that know the answer (``oracle``); Python is accepted by running it (``tool``); text and chat
    by judges that score the model's own text with no answer key, against a reference that is not the model (``self``).
    """
    return {"task": "oracle", "python": "tool"}.get(kind, "self")


def write_pairs(paths: ProjectPaths, store: Store, cycle_id: int) -> list[Path]:
    """The cycle's preference pairs, one file per source (a_vs_b, task), in TRL's format; DPO reads the store."""
    by_source: dict[str, list[Any]] = {}
    for p in candidates.cycle_pairs(store, cycle_id):
        by_source.setdefault(p["source"], []).append({**dict(p), "cycle": cycle_id})
    written = []
    for source, group in by_source.items():
        path = rework_file(paths.rework, PAIRS, group[0]["generation"], source, cycle_id)
        if write_records(path, group, kind=PAIRS):
            written.append(path)
    return written


def _dataset_kind(row: Any) -> str:
    """The rework dataset a candidate goes to: solved tasks, chats, or text (Python sources included)."""
    if row["strategy"] == solve.STRATEGY:
        return "tasks"
    return "chat" if row["kind"] == "chat" else "text"


def _record(store: Store, row: Any, cycle_id: int) -> dict[str, Any]:
    verdicts = [
        {"judge": v["judge"], "status": v["status"], "score": v["score"], "reason": v["reason"]}
        for v in candidates.verdicts_of(store, row["id"])
    ]
    body: dict[str, Any]
    if row["kind"] == "chat":
        body = {"messages": json.loads(row["content"])["messages"]}
    else:
        body = {"text": row["content"]}
    provenance = {
        "kind": row["kind"],
        "label_source": label_source(row["kind"]),
        "strategy": row["strategy"],
        "generation": row["generation"],
        "cycle": cycle_id,
        "sources": json.loads(row["source_ids"]),
        "verdicts": verdicts,  # each judge's score is here (the candidate's ``scores`` repeat them)
        "created_at": row["created_at"],
    }
    if row["strategy"] == solve.STRATEGY:
        return solve.rework_record(row, {"candidate": f"c{cycle_id:05d}-{row['id']}", **provenance})
    return {"id": f"c{cycle_id:05d}-{row['id']}", **body, **provenance}
