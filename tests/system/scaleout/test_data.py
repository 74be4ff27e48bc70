"""The training set beyond memory: lazy packing, the Arrow cache in the run dir, streaming, a streaming run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle_helpers import chat_record, fill_corpus, make_project, paragraph, sentences

from selfloop.model.tokenizer import train_tokenizer
from selfloop.records import Doc
from selfloop.store import Store
from selfloop.store.corpus import load_documents
from selfloop.train.data import (
    TOKENIZE_BATCH,
    build_train_dataset,
    data_fingerprint,
    encode_docs,
    iter_text_blocks,
    snapshot_examples,
    write_snapshot,
)
from selfloop.train.launch import launch_training
from selfloop.train.rundir import RunDir, RunValues

BLOCK = 32


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    tok = train_tokenizer([paragraph(i) for i in range(30)], 320, max_length=64)
    folder = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)  # as the training child holds it


def docs() -> list[Doc]:
    """Many short texts (several tokenizer batches), a long one, chats, tasks with and without a solution."""
    texts = [" ".join(sentences(1 + i % 3, seed=i)) for i in range(TOKENIZE_BATCH + 40)] + [paragraph(9, n=60)]
    out = [Doc(i, "orig", "text", t, len(t), f"t{i}") for i, t in enumerate(texts)]
    records = [
        ("chat", json.dumps(chat_record(1))),
        ("task", json.dumps({"prompt": "add 1 and 2", "solution": "3"})),
        ("task", json.dumps({"prompt": "add 2 and 2", "tests": "assert f() == 4"})),  # trains as nothing
        ("chat", "{not json"),
        ("chat", json.dumps(chat_record(2))),
    ]
    out += [Doc(1000 + i, "orig", kind, content, len(content), f"c{i}") for i, (kind, content) in enumerate(records)]
    # Interleaved as a mixture would be: the examples still come out text first, then chats.
    return out[:100] + out[-5:-2] + out[100:-5] + out[-2:]


@pytest.fixture
def snapshot(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    write_snapshot(path, docs())
    return path


def test_lazy_packing_cuts_the_same_token_stream_across_tokenizer_batches(tok):
    texts = [d.content for d in docs() if d.kind == "text"]
    stream = []
    for text in texts:
        stream += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    blocks = list(iter_text_blocks(iter(texts), tok, BLOCK))
    assert len(blocks) == -(-len(stream) // BLOCK)
    assert [t for b in blocks for t, m in zip(b["input_ids"], b["attention_mask"]) if m] == stream
    assert all(len(b["input_ids"]) == len(b["labels"]) == BLOCK for b in blocks)


def test_snapshot_examples_equal_the_in_memory_encoding(tok, snapshot):
    expected = encode_docs(docs(), tok, BLOCK)
    examples = list(snapshot_examples(str(snapshot), tok, BLOCK))
    assert [e["chat"] for e in examples] == [0] * len(expected["text"]) + [1] * len(expected["chat"])
    assert [{k: e[k] for k in ("input_ids", "attention_mask", "labels")} for e in examples] == expected[
        "text"
    ] + expected["chat"]
    assert len(expected["chat"]) == 3  # two chats and the solved task


def test_arrow_training_set_is_memory_mapped_in_the_run_dir_and_reused(tok, snapshot, tmp_path):
    cache = tmp_path / "arrow"
    dataset, counts = build_train_dataset(snapshot, tok, BLOCK, cache)
    expected = encode_docs(docs(), tok, BLOCK)
    assert counts == {"text": len(expected["text"]), "chat": len(expected["chat"])}
    assert dataset.column_names == ["input_ids", "attention_mask", "labels"]
    assert dataset[:] == {k: [e[k] for e in expected["text"] + expected["chat"]] for k in dataset.column_names}
    files = [Path(f["filename"]) for f in dataset.cache_files]
    assert files and all(cache in f.parents for f in files)  # backed by the file, not held in memory
    written = files[0].stat().st_mtime_ns

    tok("a long text " * 50, truncation=True, max_length=8)  # calls change the tokenizer's call state only
    again, again_counts = build_train_dataset(snapshot, tok, BLOCK, cache)
    assert again_counts == counts and [Path(f["filename"]) for f in again.cache_files] == files
    assert files[0].stat().st_mtime_ns == written  # opened, not rebuilt

    with snapshot.open("a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {"id": 9999, "origin": "orig", "kind": "text", "content": "One more line.", "n_chars": 14, "hash": "x"}
            )
            + "\n"
        )
    assert data_fingerprint(snapshot, tok, BLOCK) not in str(files[0])
    grown, _ = build_train_dataset(snapshot, tok, BLOCK, cache)
    assert [Path(f["filename"]) for f in grown.cache_files] != files


def test_streaming_yields_every_example_in_a_seeded_shuffle(tok, snapshot, tmp_path):
    stream, counts = build_train_dataset(
        snapshot, tok, BLOCK, tmp_path / "arrow", streaming=True, shuffle_buffer=64, seed=3
    )
    assert counts is None  # not known without a pass over the data
    assert not (tmp_path / "arrow").exists()  # nothing is written
    first = list(stream)
    expected = encode_docs(docs(), tok, BLOCK)
    key = lambda e: (e["input_ids"], e["labels"])  # noqa: E731
    assert sorted(first, key=key) == sorted(expected["text"] + expected["chat"], key=key)
    assert first != expected["text"] + expected["chat"]  # shuffled
    assert list(stream) == first  # the same seed and epoch give the same order


@pytest.mark.slow
def test_a_streaming_run_trains_and_reports_unknown_counts(tmp_path):
    config_path, cfg, paths = make_project(tmp_path, {"train": {"streaming": True, "shuffle_buffer": 32}})
    with Store.open(paths.db) as store:
        fill_corpus(store)
        run_dir = paths.runs / "gen-0000"
        run_dir.mkdir(parents=True)
        write_snapshot(run_dir / "data.jsonl", load_documents(store, split="train", origin="orig"))
    RunDir(run_dir).write_config(
        cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=cfg.train.gen0_steps)
    )
    result = launch_training(run_dir)
    assert result["status"] == "done" and result["global_step"] == cfg.train.gen0_steps
    assert result["examples"] is None and result["tokens"] > 0
    assert (run_dir / "final" / "model.safetensors").is_file() and not (run_dir / "arrow").exists()
