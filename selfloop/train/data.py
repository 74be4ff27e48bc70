"""Training and evaluation data: the document snapshot, the mixture, and token blocks.

Covers: the mixture rule (pure; orig is never dropped, rework is weighted and capped), the snapshot file a run reads
(so a resumed run sees exactly the data it started with), tokenization (plain text packed into blocks; chat with
loss on assistant tokens only) and the training set (a memory-mapped Arrow file in the run dir, or a stream).

Does not cover: loading documents (``selfloop.store.corpus.load_documents``), the Trainer run
(``selfloop.train.run``), metrics (``evaluate``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

from selfloop.records import Doc

IGNORE = -100  # label value the loss ignores
TOKENIZE_BATCH = 256  # texts per fast-tokenizer call: batches run in Rust threads and bound what is held
DATA_FORMAT = 1  # part of the Arrow cache fingerprint; bump when the example layout changes


def select_mixture(
    orig: Sequence[Doc], rework: Sequence[Doc], *, weight: float, max_share: float, seed: int
) -> list[Doc]:
    """All of ``orig`` plus a seeded sample of ``rework``.

    The rework target is ``weight`` times rework's characters (weight > 1 repeats
    rework documents), capped so rework is at most ``max_share`` of the mixture's
    characters. Whole documents are drawn in a seeded order until the target is met.

    Rework is downsampled to fit; orig is never dropped (accumulate, never replace).
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


def iter_snapshot(path: Path) -> Iterator[Doc]:
    """The snapshot's documents one at a time, so a snapshot larger than memory can be read."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Doc(**json.loads(line))


def read_snapshot(path: Path) -> list[Doc]:
    return list(iter_snapshot(path))


# --------------------------------------------------------------------------- tokens


def messages_of(doc: Doc) -> list[dict[str, str]] | None:
    """The conversation a chat (or solved task) document trains as, or None if it trains as none.

    Task documents train only when they carry a worked answer (string ``prompt`` and
    ``solution``), as a user/assistant exchange; bare tasks are skipped because they are
    verifiable prompts for the task suite, not text to imitate.
    """
    try:
        record = json.loads(doc.content)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if doc.kind == "chat":
        messages = record.get("messages")
        ok = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
        return [{"role": m["role"], "content": m["content"]} for m in messages] if ok and messages else None
    if doc.kind == "task" and isinstance(record.get("prompt"), str) and isinstance(record.get("solution"), str):
        return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["solution"]}]
    return None


def iter_text_blocks(texts: Iterable[str], tokenizer, block_size: int) -> Iterator[dict[str, list[int]]]:
    """Concatenate texts (each followed by eos) and cut into ``block_size`` blocks, lazily.

    Holds one batch of texts and less than one block of carried-over tokens at a
    time. The last, partial block is padded with attention 0 and label -100 so
    no text is thrown away.
    """
    texts = iter(texts)
    stream: list[int] = []
    while batch := list(islice(texts, TOKENIZE_BATCH)):
        # verbose=False: long documents are expected here, they are cut into blocks below.
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            stream.extend(ids)
            stream.append(tokenizer.eos_token_id)
            start = 0
            while len(stream) - start >= block_size:
                block = stream[start : start + block_size]
                yield _padded(block, list(block), tokenizer.pad_token_id, block_size)
                start += block_size
            del stream[:start]
    if stream:
        yield _padded(stream, list(stream), tokenizer.pad_token_id, block_size)


def pack_texts(texts: Iterable[str], tokenizer, block_size: int) -> list[dict[str, list[int]]]:
    """All blocks of ``iter_text_blocks`` as a list."""
    return list(iter_text_blocks(texts, tokenizer, block_size))


class ChatSkip(ValueError):
    """Why a conversation trains as no example (the reason is logged and, if every chat is skipped, an error)."""


def _render(tokenizer, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # unknown role, a template that raises: the conversation trains as nothing
        raise ChatSkip(f"the chat template refused it ({type(e).__name__}: {e})") from None


def assistant_spans(messages: list[dict[str, str]], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns, found from the template alone.

    No ``{% generation %}`` marks needed (few real templates have them): an assistant turn is what
    rendering the conversation up to and including it adds to rendering the conversation before it with
    the assistant header (``add_generation_prompt``). The span therefore holds the reply and whatever
    the template closes it with (its end-of-turn token), never the header. A template that renders earlier
    turns differently once later ones follow (some hide past reasoning) is refused with that reason.
    """
    if not tokenizer.chat_template:
        raise ChatSkip("the tokenizer has no chat template")
    full = _render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ChatSkip(f"the chat template renders turn {i} differently once later turns follow")
        if len(upto) > len(before):
            spans.append((len(before), len(upto)))
    if not spans:
        raise ChatSkip("no assistant turn")
    return full, spans


def chat_example(messages: list[dict[str, str]], tokenizer, block_size: int) -> dict[str, list[int]]:
    """One conversation as one sequence, loss on assistant tokens only; ``ChatSkip`` says why not.

    Tokens are assigned to assistant spans by their character offsets (``return_offsets_mapping``), so
    the mask is exact whatever the tokenizer merges at a turn boundary.
    """
    full, spans = assistant_spans(messages, tokenizer)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(enc["input_ids"])[:block_size]
    offsets = enc["offset_mapping"][:block_size]
    mask = [any(lo <= start < hi for lo, hi in spans) for start, _ in offsets]
    if not any(mask):
        raise ChatSkip(f"its first assistant token comes after block_size ({block_size}) tokens")
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    return _padded(ids, labels, tokenizer.pad_token_id, block_size)


def encode_chat(messages: list[dict[str, str]], tokenizer, block_size: int) -> dict[str, list[int]] | None:
    """``chat_example``, or None where it would raise ``ChatSkip``."""
    try:
        return chat_example(messages, tokenizer, block_size)
    except ChatSkip:
        return None


def _padded(ids: list[int], labels: list[int], pad_id: int, block_size: int) -> dict[str, list[int]]:
    n = block_size - len(ids)
    return {
        "input_ids": ids + [pad_id] * n,
        "attention_mask": [1] * len(ids) + [0] * n,
        "labels": labels + [IGNORE] * n,
    }


def iter_chat_examples(docs: Iterable[Doc], tokenizer, block_size: int) -> Iterator[dict[str, list[int]]]:
    """One example per chat (or solved task) document that trains, in document order."""
    for doc in docs:
        if doc.kind in ("chat", "task") and (messages := messages_of(doc)):
            if example := encode_chat(messages, tokenizer, block_size):
                yield example


def trainable_kinds(docs: Iterable[Doc]) -> dict[str, int]:
    """Documents that should give training examples, by kind: text, and chat (chats and solved tasks).

    Bare tasks are not counted: they are prompts for the task suite, not text to imitate.
    """
    counts = {"text": 0, "chat": 0}
    for doc in docs:
        if doc.kind == "text":
            counts["text"] += 1
        elif doc.kind == "chat" or (doc.kind == "task" and messages_of(doc) is not None):
            counts["chat"] += 1
    return counts


def chat_skip_reasons(docs: Iterable[Doc], tokenizer, block_size: int, *, limit: int = 100) -> dict[str, list[int]]:
    """Why chat documents train as nothing: reason -> ids of (up to ``limit`` looked-at) documents it stopped."""
    reasons: dict[str, list[int]] = {}
    for doc in docs:
        if doc.kind not in ("chat", "task") or (doc.kind == "task" and messages_of(doc) is None):
            continue
        limit -= 1
        if limit < 0:
            break
        try:
            if (messages := messages_of(doc)) is None:
                raise ChatSkip("not a conversation (no list of role/content messages)")
            chat_example(messages, tokenizer, block_size)
        except ChatSkip as e:
            reasons.setdefault(str(e), []).append(doc.id)
    return reasons


def missing_kinds(documents: dict[str, int], examples: dict[str, int]) -> list[str]:
    """The kinds that have documents but gave no training example: nothing is dropped silently."""
    return [kind for kind, n in documents.items() if n and not examples.get(kind)]


def encode_docs(docs: Sequence[Doc], tokenizer, block_size: int) -> dict[str, list[dict[str, list[int]]]]:
    """Fixed-length examples per kind: ``{"text": [...], "chat": [...]}`` in document order."""
    texts = (d.content for d in docs if d.kind == "text")
    return {
        "text": pack_texts(texts, tokenizer, block_size),
        "chat": list(iter_chat_examples(docs, tokenizer, block_size)),
    }


def to_dataset(examples: Sequence[dict[str, list[int]]]):
    """A ``datasets.Dataset`` of fixed-length examples (input_ids, attention_mask, labels), held in memory."""
    from datasets import Dataset

    return Dataset.from_dict({key: [e[key] for e in examples] for key in ("input_ids", "attention_mask", "labels")})


# --------------------------------------------------------------------------- the training set


def snapshot_examples(snapshot: str, tokenizer, block_size: int) -> Iterator[dict[str, list[int] | int]]:
    """The training examples of a snapshot file, as ``encode_docs`` orders them (text blocks, then chats).

    Reads the file twice instead of holding it; each example carries ``chat`` (0/1)
    so the counts per kind can be reported without a second tokenization.
    """
    path = Path(snapshot)
    texts = (d.content for d in iter_snapshot(path) if d.kind == "text")
    for example in iter_text_blocks(texts, tokenizer, block_size):
        yield {**example, "chat": 0}
    for example in iter_chat_examples(iter_snapshot(path), tokenizer, block_size):
        yield {**example, "chat": 1}


def example_features(block_size: int):
    """The Arrow schema of a training example: fixed-length id, mask and label rows."""
    from datasets import Features, List, Value

    return Features(
        {
            "input_ids": List(Value("int32"), length=block_size),
            "attention_mask": List(Value("int8"), length=block_size),
            "labels": List(Value("int32"), length=block_size),
            "chat": Value("int8"),
        }
    )


def data_fingerprint(snapshot: Path, tokenizer, block_size: int) -> str:
    """Names the Arrow cache: the snapshot's bytes, the tokenizer's vocabulary and template, the block size.

    Built from content, not object identity, so every DDP rank and a resumed run
    compute the same name and reuse one cache.
    """
    h = hashlib.sha256(f"selfloop-train-data-v{DATA_FORMAT}:{block_size}\n".encode())
    with Path(snapshot).open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    for call_state in ("truncation", "padding"):  # set by calls to the tokenizer, not part of what it is
        backend.pop(call_state, None)
    h.update(json.dumps(backend, sort_keys=True).encode())
    h.update(str(tokenizer.chat_template).encode())
    return h.hexdigest()[:32]


def build_train_dataset(
    snapshot: Path,
    tokenizer,
    block_size: int,
    cache_dir: Path,
    *,
    streaming: bool = False,
    shuffle_buffer: int = 4096,
    seed: int = 0,
):
    """The training set of a snapshot and its counts per kind.

    Default: ``Dataset.from_generator`` writes the examples to an Arrow file under
    ``cache_dir`` in batches and returns it memory-mapped, so peak memory does not
    grow with the corpus; a second call with the same inputs (another DDP rank,
    a resumed run) opens the cached file. Returns ``(dataset, {"text": n, "chat": n})``.

    ``streaming``: an ``IterableDataset`` that tokenizes while the Trainer reads,
    shuffled through a ``shuffle_buffer``-example buffer; nothing is written and
    the counts are unknown (None).
    """
    from datasets import Dataset, IterableDataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # the child's log is no place for progress bars
    gen_kwargs = {"snapshot": str(snapshot), "tokenizer": tokenizer, "block_size": block_size}
    features = example_features(block_size)
    if streaming:
        stream = IterableDataset.from_generator(snapshot_examples, features=features, gen_kwargs=gen_kwargs)
        return stream.remove_columns("chat").shuffle(seed=seed, buffer_size=shuffle_buffer), None
    dataset = Dataset.from_generator(
        snapshot_examples,
        features=features,
        gen_kwargs=gen_kwargs,
        cache_dir=str(cache_dir),
        fingerprint=data_fingerprint(snapshot, tokenizer, block_size),
        writer_batch_size=1000,
    )
    chats = sum(dataset.with_format("arrow")["chat"].to_pylist())
    return dataset.remove_columns("chat"), {"text": len(dataset) - chats, "chat": chats}
