"""Training and evaluation data: the document snapshot, the mixture, and token blocks.

Covers:
- reading active documents from the state store (plain SQL on ``documents``),
- the mixture rule (pure): every active orig training document once, plus
  accepted rework documents weighted by ``rework_weight`` and capped at
  ``rework_max_share`` of the mixture's characters; rework is downsampled to fit,
  orig is never dropped (accumulate, never replace),
- the snapshot file a training run reads (so a resumed run sees exactly the data
  it started with, even if the corpus changed meanwhile),
- tokenization: plain text packed into ``block_size`` blocks for causal LM loss;
  chat records rendered by the tokenizer's chat template with loss on assistant
  tokens only (labels -100 elsewhere).

Task documents train only when they carry a worked answer (string ``prompt`` and
``solution``), as a user/assistant exchange; bare tasks (no solution) are
skipped here because they are verifiable prompts for the task suite, not text to
imitate. The task-pack work decides whether that changes.

Does not cover: the Trainer run (``selfloop.train.run``) or metrics (``evaluate``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

IGNORE = -100  # label value the loss ignores


@dataclass(frozen=True)
class Doc:
    id: int
    origin: str  # orig | rework
    kind: str  # text | chat | task
    content: str
    n_chars: int
    hash: str


def load_documents(store, *, split: str, origin: str) -> list[Doc]:
    """Active documents of one split and origin, in id order (the deterministic base order)."""
    rows = store.query(
        "SELECT id, origin, kind, content, n_chars, hash FROM documents "
        "WHERE status = 'active' AND split = ? AND origin = ? ORDER BY id",
        (split, origin),
    )
    return [Doc(r["id"], r["origin"], r["kind"], r["content"], r["n_chars"], r["hash"]) for r in rows]


def select_mixture(
    orig: Sequence[Doc], rework: Sequence[Doc], *, weight: float, max_share: float, seed: int
) -> list[Doc]:
    """All of ``orig`` plus a seeded sample of ``rework``.

    The rework target is ``weight`` times rework's characters (weight > 1 repeats
    rework documents), capped so rework is at most ``max_share`` of the mixture's
    characters. Whole documents are drawn in a seeded order until the target is met.
    """
    mixture = list(orig)
    rework = [d for d in rework if d.n_chars > 0]  # an empty document could never fill the target
    if not rework or weight <= 0 or max_share <= 0:
        return mixture
    orig_chars = sum(d.n_chars for d in orig)
    target = weight * sum(d.n_chars for d in rework)
    if max_share < 1:
        target = min(target, orig_chars * max_share / (1 - max_share))
    rng = random.Random(seed)
    taken = 0
    # One seeded pass per repetition (a document appears at most ceil(weight) times);
    # documents that would overshoot are skipped so a large one does not block
    # smaller ones that still fit.
    for _ in range(math.ceil(weight)):
        order = list(rework)
        rng.shuffle(order)
        for doc in order:
            if taken + doc.n_chars <= target:
                mixture.append(doc)
                taken += doc.n_chars
    return mixture


def rework_share(docs: Iterable[Doc]) -> float:
    """Share of characters that came from rework."""
    docs = list(docs)
    total = sum(d.n_chars for d in docs)
    return sum(d.n_chars for d in docs if d.origin == "rework") / total if total else 0.0


def summarize(docs: Sequence[Doc]) -> dict[str, Any]:
    """Counts and a content hash of a snapshot, for the manifest."""
    h = hashlib.sha256()
    counts: dict[str, int] = {}
    for d in docs:
        h.update(d.hash.encode())
        h.update(b"\n")
        key = f"{d.origin}_{d.kind}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "documents": len(docs),
        "chars": sum(d.n_chars for d in docs),
        "rework_share": round(rework_share(docs), 4),
        "counts": counts,
        "sha256": h.hexdigest(),
    }


def write_snapshot(path: Path, docs: Sequence[Doc]) -> None:
    """One JSON document per line; written to a temp file and renamed so it is whole or absent."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(asdict(d), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_snapshot(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as f:
        return [Doc(**json.loads(line)) for line in f if line.strip()]


# --------------------------------------------------------------------------- tokens


def messages_of(doc: Doc) -> list[dict[str, str]] | None:
    """The conversation a chat (or solved task) document trains as, or None if it trains as none."""
    try:
        record = json.loads(doc.content)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if doc.kind == "chat":
        messages = record.get("messages")
        ok = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        )
        return [{"role": m["role"], "content": m["content"]} for m in messages] if ok and messages else None
    if doc.kind == "task" and isinstance(record.get("prompt"), str) and isinstance(record.get("solution"), str):
        return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["solution"]}]
    return None


def pack_texts(texts: Iterable[str], tokenizer, block_size: int) -> list[dict[str, list[int]]]:
    """Concatenate texts (each followed by eos) and cut into ``block_size`` blocks.

    The last, partial block is padded with attention 0 and label -100 so no text
    is thrown away.
    """
    stream: list[int] = []
    for text in texts:
        # verbose=False: long documents are expected here, they are cut into blocks below.
        stream.extend(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    blocks = []
    for start in range(0, len(stream), block_size):
        ids = stream[start : start + block_size]
        blocks.append(_padded(ids, list(ids), tokenizer.pad_token_id, block_size))
    return blocks


def encode_chat(messages: list[dict[str, str]], tokenizer, block_size: int) -> dict[str, list[int]] | None:
    """One conversation as one sequence, loss on assistant tokens only; None if no assistant token fits."""
    try:
        enc = tokenizer.apply_chat_template(
            messages, return_dict=True, return_assistant_tokens_mask=True, tokenizer_kwargs={"verbose": False}
        )
    except Exception:  # a malformed record (unknown role, template error) trains as nothing
        return None
    ids = list(enc["input_ids"])[:block_size]
    mask = list(enc["assistant_masks"])[:block_size]
    if not any(mask):
        return None
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    return _padded(ids, labels, tokenizer.pad_token_id, block_size)


def _padded(ids: list[int], labels: list[int], pad_id: int, block_size: int) -> dict[str, list[int]]:
    n = block_size - len(ids)
    return {
        "input_ids": ids + [pad_id] * n,
        "attention_mask": [1] * len(ids) + [0] * n,
        "labels": labels + [IGNORE] * n,
    }


def encode_docs(docs: Sequence[Doc], tokenizer, block_size: int) -> dict[str, list[dict[str, list[int]]]]:
    """Fixed-length examples per kind: ``{"text": [...], "chat": [...]}`` in document order."""
    texts = [d.content for d in docs if d.kind == "text"]
    chats = [m for m in (messages_of(d) for d in docs if d.kind in ("chat", "task")) if m]
    encoded_chats = [e for e in (encode_chat(m, tokenizer, block_size) for m in chats) if e]
    return {"text": pack_texts(texts, tokenizer, block_size), "chat": encoded_chats}


def to_dataset(examples: Sequence[dict[str, list[int]]]):
    """A ``datasets.Dataset`` of fixed-length examples (input_ids, attention_mask, labels)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {key: [e[key] for e in examples] for key in ("input_ids", "attention_mask", "labels")}
    )
