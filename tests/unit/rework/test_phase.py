"""The rework + judge phases on a real tiny champion, real files, real store, real sandbox."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from lifecycle_helpers import chat_record, install_champion, make_project, paragraph

from selfloop.ingest.ingestor import Ingestor
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry
from selfloop.rework.phase import run_judge, run_rework
from selfloop.store import Store

pytestmark = pytest.mark.slow

PY = '''def add(a, b):
    """Add two numbers.

    >>> add(2, 3)
    5
    """
    return a + b


def scale(values, k):
    """Multiply every value by k."""
    return [v * k for v in values]
'''


@pytest.fixture
def project(tmp_path):
    config_path, cfg, paths = make_project(
        tmp_path,
        {
            "rework": {
                "enabled": True,
                "candidates_per_cycle": 24,
                "samples_per_prompt": 2,
                "max_new_tokens": 24,
                "batch_size": 8,
                "temperature": 1.0,
            },
            "judge": {"diversity_floor": 0.05},
            "sandbox": {"pool_size": 1, "timeout_s": 5},
        },
    )
    (paths.orig / "prose.txt").write_text("\n\n".join(paragraph(i, 8) for i in range(30)))
    (paths.orig / "chat.jsonl").write_text("\n".join(json.dumps(chat_record(i)) for i in range(30)) + "\n")
    (paths.orig / "code.py").write_text(PY * 2)
    store = Store.open(paths.db)
    Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
    install_champion(cfg, paths, store, train_steps=20)
    yield cfg, paths, store
    store.close()


def _sources(cfg, paths, store):
    from selfloop.model.factory import load_pretrained
    from selfloop.sandbox import Sandbox

    holder = ModelHolder(Registry(paths.models, store), lambda p: load_pretrained(p))

    @contextmanager
    def sandbox():
        with Sandbox(cfg.sandbox) as sb:
            yield sb

    return holder.acquire, sandbox


def test_rework_then_judge_writes_only_judged_candidates_with_provenance(project):
    import datasets

    cfg, paths, store = project
    model_source, sandbox_source = _sources(cfg, paths, store)
    out = run_rework(cfg, store, cycle_id=1, model_source=model_source)
    assert out["candidates"] == 24 and out["writer_generation"] == 0 and out["tokens_per_s"] > 0
    kinds = {r[0] for r in store.query("SELECT DISTINCT kind FROM candidates")}
    assert {"text", "chat"} <= kinds
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE status = 'pending'") == 24

    judged = run_judge(cfg, paths, store, cycle_id=1, model_source=model_source, sandbox_source=sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE status = 'pending'") == 0
    # Every candidate carries a verdict from each judge it reached, and a reason.
    assert (
        store.scalar(
            "SELECT COUNT(*) FROM candidates c WHERE NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.candidate_id = c.id)"
        )
        == 0
    )
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE reason IS NULL") == 0
    rejected_python = store.query("SELECT reason FROM candidates WHERE kind = 'python' AND status = 'rejected'")
    assert all(r[0].startswith(("python/", "text_quality/", "a_vs_b/")) for r in rejected_python)

    accepted = store.query("SELECT * FROM candidates WHERE status = 'accepted'")
    files = sorted(f for kind in ("text", "chat") for f in (paths.rework / kind).rglob("*.jsonl"))
    assert len(files) == len(judged["files"])
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == len(accepted) == judged["accepted"]
    for rec in records:
        assert {"id", "strategy", "generation", "sources", "verdicts", "created_at", "cycle"} <= set(rec)
        assert rec["label_source"] == {"task": "oracle", "python": "tool"}.get(rec["kind"], "self")
        assert ("text" in rec) != ("messages" in rec)
        verdicts = json.loads(rec["verdicts"])
        assert verdicts and all(v["status"] == "accept" for v in verdicts)
    assert len({r["id"] for r in records}) == len(records)
    for kind in ("text", "chat"):  # one dataset per kind
        if kind_files := [str(f) for f in files if f.is_relative_to(paths.rework / kind)]:
            ds = datasets.load_dataset("json", data_files=kind_files, split="train")
            assert ds.num_rows == sum(len(Path(f).read_text().splitlines()) for f in kind_files)
    if files:  # accepted rework is ingested as rework documents, ready for the next mixture
        assert store.scalar("SELECT COUNT(*) FROM documents WHERE origin = 'rework'") >= 1
    # A-vs-B comparisons become preference pairs (chosen/rejected) either way; a sample that
    # stopped at its first token has no completion to pair (record_outcome skips it).
    ab = store.scalar(
        "SELECT COUNT(*) FROM verdicts v JOIN candidates c ON c.id = v.candidate_id "
        "WHERE v.judge = 'a_vs_b' AND v.detail LIKE '%nll_a%' AND c.completion != ''"
    )
    assert store.scalar("SELECT COUNT(*) FROM pairs") == ab > 0

    # The pairs, in TRL's preference format, beside the rework.
    [pairs_file] = (paths.rework / "pairs").rglob("a_vs_b-c00001.jsonl")
    assert len(pairs_file.read_text().splitlines()) == ab and judged["pairs"] == [
        "corpus/rework/" + str(pairs_file.relative_to(paths.rework))
    ]

    # Resuming either phase duplicates nothing.
    before = [f.read_bytes() for f in sorted(paths.rework.rglob("*.jsonl"))]
    assert run_rework(cfg, store, cycle_id=1, model_source=model_source)["resumed"]
    run_judge(cfg, paths, store, cycle_id=1, model_source=model_source, sandbox_source=sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM candidates") == 24
    assert [f.read_bytes() for f in sorted(paths.rework.rglob("*.jsonl"))] == before
    assert store.scalar("SELECT COUNT(*) FROM pairs") == ab


def test_resume_after_a_crash_mid_judging(project):
    cfg, paths, store = project
    model_source, sandbox_source = _sources(cfg, paths, store)
    run_rework(cfg, store, cycle_id=1, model_source=model_source)
    # Simulate a crash after some candidates were judged: judge only the first few rows by hand.
    from selfloop.judge import JudgeContext, Pipeline
    from selfloop.judge.reference import text_resources
    from selfloop.rework.phase import _candidate, record_outcome

    rows = store.query("SELECT * FROM candidates WHERE kind = 'text' ORDER BY id LIMIT 3")
    with model_source():
        ctx = JudgeContext(
            cfg.judge,
            resources={
                "corpus": Ingestor(cfg.ingest, cfg.watch, paths, store),
                "ingest_config": cfg.ingest,
                **text_resources(cfg.judge, paths, store, ["text"]),
            },
        )
        for row, outcome in zip(rows, Pipeline(ctx, kinds=["text"]).judge_batch([_candidate(r) for r in rows])):
            record_outcome(store, row, outcome, 1)
    first = {
        r["id"]: r["status"]
        for r in store.query("SELECT id, status FROM candidates WHERE id IN (?, ?, ?)", tuple(r["id"] for r in rows))
    }
    run_judge(cfg, paths, store, cycle_id=1, model_source=model_source, sandbox_source=sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE status = 'pending'") == 0
    again = {
        r["id"]: r["status"]
        for r in store.query("SELECT id, status FROM candidates WHERE id IN (?, ?, ?)", tuple(r["id"] for r in rows))
    }
    assert first == again or all(s == "rejected" for s in again.values())  # only the diversity guard may overturn
    per_candidate = store.query(
        "SELECT candidate_id, judge, COUNT(*) AS n FROM verdicts GROUP BY candidate_id, judge HAVING n > 1"
    )
    assert per_candidate == []


def test_diversity_floor_rejects_a_batch_of_near_copies(project):
    cfg, paths, store = project
    cfg.judge.diversity_floor = 0.99  # nothing a model writes is that diverse: every batch is refused
    model_source, sandbox_source = _sources(cfg, paths, store)
    run_rework(cfg, store, cycle_id=1, model_source=model_source)
    out = run_judge(cfg, paths, store, cycle_id=1, model_source=model_source, sandbox_source=sandbox_source)
    assert out["accepted"] == 0 and out["files"] == []
    assert not [f for f in paths.rework.rglob("*.jsonl") if not f.is_relative_to(paths.rework / "pairs")]
    if out["diversity"]:
        assert all(not f["admitted"] for f in out["diversity"].values())
        assert store.scalar("SELECT COUNT(*) FROM candidates WHERE reason = 'diversity_floor'") > 0


def test_accepted_candidates_of_a_failed_cycle_are_written_by_the_next(project):
    cfg, paths, store = project
    model_source, sandbox_source = _sources(cfg, paths, store)
    run_rework(cfg, store, cycle_id=1, model_source=model_source)
    # Cycle 1 judged two candidates acceptable, then failed before writing them (a full disk, say).
    from selfloop.judge import Outcome, accept
    from selfloop.rework.phase import _candidate, record_outcome

    for row in store.query("SELECT * FROM candidates WHERE cycle_id = 1 AND kind = 'text' ORDER BY id LIMIT 2"):
        record_outcome(store, row, Outcome(_candidate(row), (accept("stand_in", "accepted for this test"),)), 1)
    accepted = 2
    run_rework(cfg, store, cycle_id=2, model_source=model_source)
    run_judge(cfg, paths, store, cycle_id=2, model_source=model_source, sandbox_source=sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE status = 'accepted' AND rework_path IS NULL") == 0
    cycle_one = [json.loads(line) for f in paths.rework.rglob("*-c00001.jsonl") for line in f.read_text().splitlines()]
    assert len(cycle_one) == accepted


def test_a_vs_b_conditions_on_the_text_before_b_never_on_a_request_that_holds_a():
    from selfloop.rework.phase import _candidate

    def row(kind, prompt, content, completion):
        keys = dict(strategy="rewrite", kind=kind, prompt=prompt, content=content, completion=completion)
        return keys | dict(original="the original passage", source_ids="[3]")

    request = (
        "<|im_start|>user\nRewrite the following text ...\n\nthe original passage<|im_end|>\n<|im_start|>assistant\n"
    )
    instructed = _candidate(row("text", request, "a better passage", "a better passage"))
    assert instructed.metadata["prompt"] == "" and instructed.source == "the original passage"
    prefixed = _candidate(row("text", "It began ", "It began a better passage", "a better passage"))
    assert prefixed.metadata["prompt"] == "It began " and prefixed.metadata["source_ids"] == [3]
    chat = _candidate(row("chat", "<|user|>a question<|assistant|>", '{"messages": []}', "an answer"))
    assert chat.metadata["prompt"] == "<|user|>a question<|assistant|>"  # the question is the answer's context
