"""Helpers for the model-lifecycle tests: a tiny project, a learnable corpus, document rows.

Not a test module. The tiny config itself is selfloop.testing's, shared with the benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

from selfloop import testing
from selfloop.config import Config, ProjectPaths
from selfloop.store import Store

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher"]
VERBS = ["sees", "likes", "finds", "helps", "follows", "paints"]
OBJECTS = ["the red ball", "a green tree", "the river", "a quiet house", "the garden", "a long road"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(n)]


def paragraph(seed: int, n: int = 6) -> str:
    return " ".join(sentences(n, seed))


def chat_record(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    subject, obj = rng.choice(SUBJECTS), rng.choice(OBJECTS)
    return {
        "messages": [
            {"role": "user", "content": f"What does {subject} see?"},
            {"role": "assistant", "content": f"{subject.capitalize()} sees {obj}."},
        ]
    }


def make_project(root: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, Config, ProjectPaths]:
    """A project dir with the tiny config (``overrides`` merged in) and empty orig/ and rework/."""
    return testing.make_project(root, testing.tiny_config(overrides))


def insert_doc(
    store: Store,
    content: str,
    *,
    kind: str = "text",
    origin: str = "orig",
    split: str = "train",
    status: str = "active",
) -> int:
    now = time.time()
    with store.tx() as c:
        cur = c.execute(
            "INSERT INTO documents (file_path, locator, origin, kind, format, hash, content, n_chars, split, status, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"{origin}/test.txt",
                "chunk",
                origin,
                kind,
                "jsonl" if kind != "text" else "txt",
                hashlib.sha256(content.encode()).hexdigest(),
                content,
                len(content),
                split,
                status,
                now,
                now,
            ),
        )
        return int(cur.lastrowid)


def fill_corpus(store: Store, *, n_text: int = 40, n_chat: int = 16, n_heldout: int = 6) -> None:
    """Learnable orig documents: text paragraphs and chats, train and held-out."""
    for i in range(n_text):
        insert_doc(store, paragraph(i))
    for i in range(n_chat):
        insert_doc(store, json.dumps(chat_record(i)), kind="chat")
    for i in range(n_heldout):
        insert_doc(store, paragraph(1000 + i), split="heldout")
        insert_doc(store, json.dumps(chat_record(1000 + i)), kind="chat", split="heldout")


def install_champion(cfg: Config, paths: ProjectPaths, store: Store, *, train_steps: int = 0) -> None:
    """Generation 0 as a tiny GPT-2 (optionally trained a few steps on the corpus), installed as current.

    Its tokenizer is trained on the active documents; ``train_steps`` > 0 fits the
    model a little to the corpus so its samples are not pure noise.
    """
    import torch

    from selfloop.model.factory import build_scratch_model
    from selfloop.model.registry import Registry
    from selfloop.model.tokenizer import train_tokenizer

    texts = [r[0] for r in store.query("SELECT content FROM documents WHERE status = 'active'")]
    tok = train_tokenizer(texts, cfg.model.vocab_size, max_length=cfg.model.n_positions)
    torch.manual_seed(0)
    model = build_scratch_model(cfg.model, tok)
    if train_steps:
        ids = torch.tensor([tok(paragraph(i, 8))["input_ids"][:48] for i in range(8)])
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(train_steps):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    out = paths.state / "export"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    registry = Registry(paths.models, store)
    registry.add(0, out, {"parent": None}, cfg.model_dump())
    registry.promote(0, {"reason": "first generation"})


def prepared_run(root: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, Config, ProjectPaths, Path]:
    """A tiny project with a learnable corpus and generation 0's run dir holding its data snapshot,
    ready for ``launch_training`` (what ``phase_train`` would have prepared)."""
    from selfloop.store.corpus import load_documents
    from selfloop.train.data import write_snapshot

    config_path, cfg, paths = make_project(root, overrides)
    run_dir = paths.runs / "gen-0000"
    run_dir.mkdir(parents=True)
    with Store.open(paths.db) as store:
        fill_corpus(store)
        write_snapshot(run_dir / "data.jsonl", load_documents(store, split="train", origin="orig"))
    return config_path, cfg, paths, run_dir
