"""Reference-model scoring: how likely is a continuation under a model?

``continuation_nll`` is the mean negative log-likelihood per token of each
continuation given its prompt. The A-vs-B judge compares an original (A) and a
rewrite (B) of the same prompt with it, and the synthesize judge records it.

Prompt and continuation are tokenized separately and concatenated, so A and B
are cut at the same token boundary; the prompt is trimmed from the left so the
pair fits the model's context. Only continuation tokens are scored.
"""

from __future__ import annotations

from collections.abc import Sequence


def continuation_nll(
    model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 16
) -> list[float]:
    """Mean NLL (nats/token) of each continuation given its prompt; inf for an empty continuation."""
    return mean_nll(token_nll(model, tokenizer, prompts, continuations, batch_size=batch_size))


def mean_nll(scored: Sequence[tuple[list[int], list[float]]]) -> list[float]:
    """Mean NLL (nats/token) of each of ``token_nll``'s results; inf for one with no token."""
    return [sum(nll) / len(nll) if nll else float("inf") for _, nll in scored]


def token_nll(
    model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 16
) -> list[tuple[list[int], list[float]]]:
    """Each continuation's token ids and their NLLs (nats) given the prompt and the tokens before them."""
    import torch
    import torch.nn.functional as F

    if len(prompts) != len(continuations):
        raise ValueError("prompts and continuations differ in length")
    limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows: list[tuple[list[int], int]] = []  # token ids, number of prompt tokens
    for prompt, cont in zip(prompts, continuations):
        p = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] if prompt else []
        c = tokenizer(cont, add_special_tokens=False, verbose=False)["input_ids"] if cont else []
        c = c[: limit - 1]
        p = p[-(limit - len(c)) :] if len(p) + len(c) > limit else p
        if not p:
            # Score the first continuation token too: condition on eos as a document start.
            p = [tokenizer.eos_token_id]
        rows.append((p + c, len(p)))
    # Longest first, so each batch pads to lengths close to its own.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    out: list[tuple[list[int], list[float]]] = [([], [])] * len(rows)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            chunk = [rows[i] for i in idx]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (seq, _) in enumerate(chunk):
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device), reduction="none")
            for row, (i, (seq, n_prompt)) in enumerate(zip(idx, chunk, strict=True)):
                out[i] = (seq[n_prompt:], losses[row, n_prompt - 1 : len(seq) - 1].tolist())
    return out
