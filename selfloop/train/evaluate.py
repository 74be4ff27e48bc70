"""Held-out evaluation of the champion and the challenger on the same data.

Covers: loss and perplexity on the orig held-out split (text, chat and combined, token-weighted) on a fixed,
never-shuffled eval set; per-example loss sums and token counts on the guard documents (held-out text and chat that
are not tasks), which the gate bootstraps; pass@1 per task family from an optional callable; a few greedy samples
from fixed held-out prompts for the manifest and dashboard.

Does not cover: the promotion decision (``selfloop.train.gate``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from selfloop.config import TrainConfig
from selfloop.model.generate import generate
from selfloop.records import Doc
from selfloop.train.data import IGNORE, encode_docs, messages_of

TaskSuite = Callable[[Any, Any], dict[str, float]]  # (model, tokenizer) -> {family: pass@1}


def eval_examples(docs: Sequence[Doc], tokenizer, cfg: TrainConfig) -> dict[str, list[dict[str, list[int]]]]:
    """The fixed eval set per kind: at most ``eval_batches * batch_size`` examples, in document order."""
    limit = cfg.eval_batches * cfg.batch_size
    return {kind: examples[:limit] for kind, examples in encode_docs(docs, tokenizer, cfg.block_size).items()}


def example_losses(model, examples: Sequence[dict[str, list[int]]], batch_size: int) -> tuple[list[float], list[int]]:
    """Per example: the sum of next-token cross-entropy over its labelled tokens, and their count."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    sums: list[float] = []
    counts: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            ids = torch.tensor([e["input_ids"] for e in chunk], device=device)
            mask = torch.tensor([e["attention_mask"] for e in chunk], device=device)
            labels = torch.tensor([e["labels"] for e in chunk], device=device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            losses = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
            sums += losses.sum(dim=1).tolist()
            counts += (target != IGNORE).sum(dim=1).tolist()
    return sums, counts


def sample_prompts(docs: Sequence[Doc], n: int, words: int = 6) -> list[tuple[str, str]]:
    """Fixed prompts from held-out starts: ("text", first words) or ("chat", first user turn), alternating."""
    texts = [" ".join(d.content.split()[:words]) for d in docs if d.kind == "text"]
    chats = [
        m[0]["content"] for m in (messages_of(d) for d in docs if d.kind == "chat") if m and m[0]["role"] == "user"
    ]
    out: list[tuple[str, str]] = []
    for i in range(max(len(texts), len(chats))):
        out += [("text", texts[i])] if i < len(texts) else []
        out += [("chat", chats[i])] if i < len(chats) else []
    return out[:n]


def evaluate_model(
    model,
    tokenizer,
    docs: Sequence[Doc],
    cfg: TrainConfig,
    task_suite: TaskSuite | None = None,
    guard_docs: Sequence[Doc] | None = None,
) -> dict[str, Any]:
    """Figures of one model: losses, perplexities, token counts, the guard's per-example losses (when
    ``guard_docs`` is given: ``{"guard": {kind: {"sums": [...], "tokens": [...]}}}``), task pass@1, samples."""
    model.eval()
    figures: dict[str, Any] = {"tokens": {}}
    total, count = 0.0, 0
    per_example: dict[str, tuple[list, tuple[list[float], list[int]]]] = {}
    for kind, examples in eval_examples(docs, tokenizer, cfg).items():
        if not examples:
            continue
        sums, counts = example_losses(model, examples, cfg.batch_size)
        per_example[kind] = (examples, (sums, counts))
        s, c = sum(sums), sum(counts)
        if c:
            figures[f"{kind}_loss"] = s / c
            figures[f"{kind}_ppl"] = math.exp(min(s / c, 50.0))
            figures["tokens"][kind] = c
            total, count = total + s, count + c
    figures["loss"] = total / count if count else None
    figures["ppl"] = math.exp(min(total / count, 50.0)) if count else None
    if guard_docs is not None:
        guard: dict[str, Any] = {}
        for kind, examples in eval_examples(guard_docs, tokenizer, cfg).items():
            if not examples:
                continue
            seen = per_example.get(kind)  # text held-out blocks are the same in both sets: computed once
            sums, counts = seen[1] if seen and seen[0] == examples else example_losses(model, examples, cfg.batch_size)
            guard[kind] = {"sums": [round(x, 5) for x in sums], "tokens": counts}
        figures["guard"] = guard
    figures["tasks"] = dict(task_suite(model, tokenizer)) if task_suite else {}
    samples = []
    for kind, prompt in sample_prompts(docs, cfg.eval_samples):
        out = generate(
            model, tokenizer, [prompt], chat=kind == "chat", temperature=0, max_new_tokens=cfg.eval_sample_tokens
        )
        samples.append({"kind": kind, "prompt": prompt, "completion": out.texts[0][0]})
    figures["samples"] = samples
    return figures


def evaluate(
    models: dict[str, tuple[Any, Any]], docs: Sequence[Doc], cfg: TrainConfig, task_suite: TaskSuite | None = None
) -> dict[str, dict[str, Any]]:
    """Evaluate every named (model, tokenizer) on the same held-out documents.

    The eval set is the first ``eval_batches`` batches of the held-out documents in id
    order, never shuffled. Each model tokenizes the documents with its own tokenizer;
    generations of one project share the tokenizer trained at generation 0, so their
    per-token losses compare directly.
    """
    return {name: evaluate_model(model, tok, docs, cfg, task_suite) for name, (model, tok) in models.items()}
