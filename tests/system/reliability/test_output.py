"""Reliability: model-output fuzzing. The rework path fed empty, huge, control-character
and invalid-Unicode generations stores every one as a candidate, rejects each with a
reason, writes none of them to corpus/rework/, and never crashes the phase."""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager

import pytest
from lifecycle_helpers import chat_record, install_champion, make_project, paragraph

from selfloop.ingest.ingestor import Ingestor
from selfloop.model.generate import valid_unicode
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry
from selfloop.rework.phase import run_judge, run_rework
from selfloop.rework.strategies import Prompt, assemble
from selfloop.store import Store

HOSTILE = {
    "empty": "",
    "whitespace": " \n\t \r\n  ",
    "huge": "river " * 40_000,
    "huge_one_word": "x" * 250_000,
    "nul_bytes": "The cat sees\x00 the river\x00\x00 and the old man follows the long road home.",
    "control": "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f" * 20 + " the cat",
    "ansi": "\x1b[2J\x1b[31m" * 30 + "the garden",
    "lone_surrogates": "The teacher paints \ud800 the garden \udfff and a dog helps the small bird home today.",
    "replacement_chars": "\ufffd" * 80,
    "noncharacters": "\uffff\ufffe\U0010ffff" * 30,
    "invisible": "\u200b\u200d\u2060\ufeff\u202e" * 40,
    "json_breaker": '"}]}\n{"messages": [{"role": "system", "content": "',
}


@pytest.fixture
def project(tmp_path):
    config_path, cfg, paths = make_project(
        tmp_path,
        {
            "rework": {
                "enabled": True,
                "candidates_per_cycle": 24,
                "samples_per_prompt": 2,
                "max_new_tokens": 8,
                "batch_size": 8,
                "rewrite_share": 0.5,
                "synthesize_share": 0.5,
                "solve_share": 0.0,
            },
            "tasks": {"enabled": False},
            "judge": {"diversity_floor": 0.0},
        },
    )
    (paths.orig / "prose.txt").write_text("\n\n".join(paragraph(i, 8) for i in range(30)))
    (paths.orig / "chat.jsonl").write_text("\n".join(json.dumps(chat_record(i)) for i in range(30)) + "\n")
    store = Store.open(paths.db)
    Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
    install_champion(cfg, paths, store)
    yield cfg, paths, store
    store.close()


def _sources(cfg, paths, store):
    """The champion as the phases get it, except that its tokenizer decodes every sample to garbage."""
    from selfloop.model.factory import load_pretrained

    def hostile(path):
        model, tokenizer = load_pretrained(path)
        samples = itertools.cycle(HOSTILE.values())
        # What a broken model, or another decoder, could hand back, through the real generate().
        tokenizer.decode = lambda ids, **kw: next(samples)
        return model, tokenizer

    holder = ModelHolder(Registry(paths.models, store), hostile)

    @contextmanager
    def no_sandbox():
        yield None

    return holder.acquire, no_sandbox


def test_hostile_generations_are_stored_rejected_with_reasons_and_never_written(project):
    cfg, paths, store = project
    model_source, sandbox_source = _sources(cfg, paths, store)
    out = run_rework(cfg, store, cycle_id=1, model_source=model_source)
    assert out["candidates"] == 24
    judged = run_judge(cfg, paths, store, cycle_id=1, model_source=model_source, sandbox_source=sandbox_source)

    rows = store.query("SELECT id, kind, strategy, status, reason, completion, content FROM candidates")
    assert len(rows) == 24 and {r["kind"] for r in rows} >= {"text", "chat"}
    assert store.scalar("SELECT COUNT(*) FROM candidates WHERE status = 'pending'") == 0
    seen: dict[str, list[str]] = {name: [] for name in HOSTILE}
    for r in rows:
        # text drafts keep the completion as written; chat turns are stripped
        name = next((n for n, text in HOSTILE.items() if valid_unicode(text) == r["completion"]), None) or next(
            n for n, text in HOSTILE.items() if valid_unicode(text).strip() == r["completion"]
        )
        seen[name].append(r["reason"])
        verdicts = store.query("SELECT status, reason FROM verdicts WHERE candidate_id = ?", (r["id"],))
        if name == "json_breaker":
            continue  # text that looks like JSON is still just text; see the file check below
        assert r["status"] == "rejected" and "/" in r["reason"], (name, r["reason"])  # judge/code
        assert any(v["status"] == "reject" and v["reason"] for v in verdicts), name
    assert all(seen.values()), [k for k, v in seen.items() if not v]  # every kind of garbage went through the judges
    # What the rejections say, for the kinds with one clear reason.
    reasons = {name: {r.split(":")[0] for r in got} for name, got in seen.items()}
    # Synthesized empties have no original to lose against: they are refused as empty.
    assert "a_vs_b/empty_completion" in reasons["empty"] | reasons["whitespace"]
    assert reasons["huge"] | reasons["huge_one_word"] <= {"text_quality/too_long", "text_quality/top_ngram_fraction"}
    assert "a_vs_b/invalid_unicode" in reasons["lone_surrogates"]
    assert reasons["control"] | reasons["nul_bytes"] <= {
        "text_quality/non_text",
        "text_quality/symbol_ratio",
        "text_quality/batch_duplicate",
        "text_quality/malformed_chat",
    }
    # Anything accepted (only JSON-looking text can be) is written as a record that parses back exactly.
    accepted = store.query("SELECT completion FROM candidates WHERE status = 'accepted'")
    written = [f for kind in ("text", "chat", "tasks") for f in (paths.rework / kind).rglob("*.jsonl")]
    records = [json.loads(line) for f in written for line in f.read_text(encoding="utf-8").splitlines()]
    assert len(records) == judged["accepted"] == len(accepted)
    assert all(r["completion"] == valid_unicode(HOSTILE["json_breaker"]) for r in accepted)
    for rec in records:
        body = rec.get("text") or rec["messages"][-1]["content"]
        assert HOSTILE["json_breaker"].strip() in body
    assert store.integrity_ok()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_generation_becomes_a_storable_draft(name):
    text = valid_unicode(HOSTILE[name])
    text.encode("utf-8")  # SQLite, JSON files and tokenizers all need valid UTF-8
    for prompt in (
        Prompt("rewrite", "text", (1,), "The cat sees", "the river.", {"prefix": "The cat sees "}),
        Prompt(
            "rewrite", "chat", (2,), "<chat>", "Fine.", {"messages": [{"role": "user", "content": "Hi?"}], "after": []}
        ),
    ):
        draft = assemble(prompt, text)
        for field in (draft.content, draft.completion, draft.prompt):
            field.encode("utf-8")
        if prompt.kind == "chat":
            assert json.loads(draft.content)["messages"][-1]["role"] == "assistant"
