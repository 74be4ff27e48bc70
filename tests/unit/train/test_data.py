"""The training mixture (pure), the snapshot file and token-level data prep."""

from __future__ import annotations

import json

import pytest
from lifecycle_helpers import chat_record, fill_corpus, insert_doc, make_project, paragraph

from selfloop.model.tokenizer import train_tokenizer
from selfloop.store import Store
from selfloop.store.corpus import load_documents
from selfloop.train.data import (
    IGNORE,
    Doc,
    encode_docs,
    messages_of,
    pack_texts,
    read_snapshot,
    rework_share,
    select_mixture,
    summarize,
    write_snapshot,
)


def doc(i: int, origin: str = "orig", n: int = 100, kind: str = "text", content: str | None = None) -> Doc:
    return Doc(i, origin, kind, content if content is not None else "x" * n, n, f"h{i}")


ORIG = [doc(i, n=100 + i) for i in range(20)]
REWORK = [doc(100 + i, "rework", n=50 + 7 * i) for i in range(40)]


def test_mixture_keeps_all_orig_and_respects_the_cap():
    for share in (0.0, 0.1, 0.3, 0.5, 0.9):
        mix = select_mixture(ORIG, REWORK, weight=1.0, max_share=share, seed=1)
        assert [d for d in mix if d.origin == "orig"] == ORIG  # every orig document, once, in order
        assert rework_share(mix) <= share + 1e-9
    # Little rework and a generous cap: all of it, once.
    few = REWORK[:3]
    mix = select_mixture(ORIG, few, weight=1.0, max_share=0.5, seed=1)
    assert sorted(d.id for d in mix if d.origin == "rework") == [d.id for d in few]


def test_mixture_weight_scales_rework_and_is_seeded():
    few = REWORK[:3]
    twice = select_mixture(ORIG, few, weight=2.0, max_share=0.9, seed=3)
    assert sorted(d.id for d in twice if d.origin == "rework") == sorted([d.id for d in few] * 2)
    half = select_mixture(ORIG, REWORK, weight=0.5, max_share=1.0, seed=3)
    chars = sum(d.n_chars for d in half if d.origin == "rework")
    assert 0 < chars <= 0.5 * sum(d.n_chars for d in REWORK)
    assert select_mixture(ORIG, REWORK, weight=1, max_share=0.3, seed=5) == select_mixture(
        ORIG, REWORK, weight=1, max_share=0.3, seed=5
    )
    assert select_mixture(ORIG, REWORK, weight=1, max_share=0.3, seed=5) != select_mixture(
        ORIG, REWORK, weight=1, max_share=0.3, seed=6
    )
    assert select_mixture(ORIG, REWORK, weight=0.0, max_share=0.5, seed=1) == ORIG
    # A big rework document that does not fit does not block smaller ones.
    mixed = [doc(500, "rework", n=10_000), doc(501, "rework", n=10)]
    assert [d.id for d in select_mixture(ORIG, mixed, weight=1, max_share=0.5, seed=0) if d.origin == "rework"] == [501]


def test_documents_snapshot_round_trip_and_summary(tmp_path):
    _, _, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        fill_corpus(store, n_text=3, n_chat=2, n_heldout=1)
        insert_doc(store, "dropped " * 10, status="dropped")
        insert_doc(store, "rework text " * 10, origin="rework")
        train = load_documents(store, split="train", origin="orig")
        assert [d.kind for d in train] == ["text"] * 3 + ["chat"] * 2
        assert len(load_documents(store, split="heldout", origin="orig")) == 2
        assert len(load_documents(store, split="train", origin="rework")) == 1
    write_snapshot(tmp_path / "data.jsonl", train)
    assert read_snapshot(tmp_path / "data.jsonl") == train
    s = summarize(train)
    assert s["documents"] == 5 and s["counts"] == {"orig_text": 3, "orig_chat": 2} and len(s["sha256"]) == 64
    assert summarize(train[:4])["sha256"] != s["sha256"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([paragraph(i) for i in range(20)], 320, max_length=64)


def test_text_is_packed_into_blocks_without_loss(tok):
    texts = [paragraph(i) for i in range(5)]
    blocks = pack_texts(texts, tok, 32)
    assert all(len(b["input_ids"]) == 32 for b in blocks)
    ids = [t for b in blocks for t, m in zip(b["input_ids"], b["attention_mask"]) if m]
    assert tok.decode(ids) == "".join(t + tok.eos_token for t in texts)
    assert blocks[0]["labels"] == blocks[0]["input_ids"]
    last = blocks[-1]
    assert all(label == IGNORE for label, m in zip(last["labels"], last["attention_mask"]) if not m)


def test_encode_docs_is_deterministic_and_skips_unsolved_tasks(tok):
    docs = [
        doc(1, content=paragraph(1), n=len(paragraph(1))),
        doc(2, kind="chat", content=json.dumps(chat_record(2))),
        doc(3, kind="task", content=json.dumps({"prompt": "add 1 and 2", "tests": "assert f() == 3"})),
        doc(4, kind="task", content=json.dumps({"prompt": "add 1 and 2", "solution": "3"})),
        doc(5, kind="chat", content="{not json"),
        doc(6, kind="chat", content=json.dumps({"messages": [{"role": "user", "content": "only a question"}]})),
    ]
    assert messages_of(docs[2]) is None
    assert messages_of(docs[3]) == [{"role": "user", "content": "add 1 and 2"}, {"role": "assistant", "content": "3"}]
    enc = encode_docs(docs, tok, 32)
    assert len(enc["chat"]) == 2  # the chat and the solved task; no assistant turn -> nothing to learn
    assert encode_docs(docs, tok, 32) == enc
