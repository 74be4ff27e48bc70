"""Batched sampling from a (model, tokenizer) pair.

Covers: plain-text and chat prompts, left padding, KV-cached ``model.generate``, temperature / top-p / greedy, n
samples per prompt, stopping at end of turn or eos, reproducibility from a seed (the global RNG is forked, not
disturbed), and the call's token counts and speed.

Does not cover: choosing prompts (rework, evaluation) or which model is current (``selfloop.model.holder``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass

from selfloop.model.tokenizer import end_token_ids


@dataclass(frozen=True)
class Generation:
    texts: list[list[str]]  # per prompt, n samples
    new_tokens: list[list[int]]  # generated tokens per sample, stop token included
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        total = sum(sum(t) for t in self.new_tokens)
        return total / self.seconds if self.seconds > 0 else 0.0


def render_prompts(tokenizer, prompts: Sequence[str], chat: bool) -> list[str]:
    """Chat prompts become a user turn plus the assistant header; text prompts stay as they are."""
    if not chat:
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    chat: bool = False,
    n: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 16,
) -> Generation:
    """Sample ``n`` continuations per prompt. ``temperature == 0`` is greedy (one sample, repeated).

    Chat prompts go through ``apply_chat_template`` with ``add_generation_prompt=True``.
    Speed (measured on the default model, 2 CPU cores; BENCHMARKS.md "Rework
    generation"): prompts are batched in order of length (less padding), decoding
    uses transformers' preallocated ``StaticCache`` (the default dynamic cache grows
    by concatenation, copying every sequence's whole cache at every step: about 40 %
    of a decoding forward here), and with n samples per prompt each prompt is
    encoded once and its cache repeated for its n samples. ``torch.compile`` is never
    triggered: its compile time does not pay back over one rework phase.
    """
    import torch

    greedy = temperature <= 0
    draws = 1 if greedy else n
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit:
        # Keep prompt + continuation inside the context: the prompt loses its oldest tokens.
        max_new_tokens = max(1, min(max_new_tokens, limit // 2))
    keep = (limit - max_new_tokens) if limit else None
    stops = end_token_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None))
    device = next(model.parameters()).device
    texts: list[list[str]] = []
    counts: list[list[int]] = []
    options = {
        "do_sample": not greedy,
        "temperature": temperature if not greedy else None,
        "top_p": top_p if not greedy else None,
        "top_k": None,
        "max_new_tokens": max_new_tokens,
        "eos_token_id": stops,
        "pad_token_id": tokenizer.pad_token_id,
        # On a GPU, generate compiles the forward when the cache is static; the compile
        # would be paid again at every reload of the model, for one phase of decoding.
        "disable_compile": True,
    }
    rendered = render_prompts(tokenizer, prompts, chat)
    started = time.perf_counter()
    ids = [tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"] for p in rendered]
    ids = [(i[-keep:] if keep else i) or [tokenizer.eos_token_id] for i in ids]
    samples: list[list[list[int]]] = [[] for _ in ids]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        for chunk in length_batches([len(i) for i in ids], batch_size):
            batch = tokenizer.pad(
                {"input_ids": [ids[i] for i in chunk]}, padding=True, padding_side="left", return_tensors="pt"
            ).to(device)
            out = _sample(model, batch, draws, options)
            new = out[:, batch["input_ids"].shape[1] :].tolist()
            for row, i in enumerate(chunk):
                drawn = [_until_stop(seq, stops) for seq in new[row * draws : (row + 1) * draws]]
                samples[i] = drawn * n if greedy else drawn
    for drawn in samples:
        texts.append([valid_unicode(tokenizer.decode(s, skip_special_tokens=True)) for s in drawn])
        counts.append([len(s) for s in drawn])
    return Generation(texts, counts, time.perf_counter() - started)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of the prompts in batches of ``batch_size``, prompts of similar length together.

    Left padding makes every prompt of a batch as long as its longest; the
    padding costs attention and cache space at every decoding step. The order is
    a stable sort, so a call's batches (and its samples, from its seed) are the
    same every time.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _sample(model, batch, draws: int, options: dict):
    """``draws`` samples per prompt of a left-padded ``batch``: prompt + new ids, a prompt's draws adjacent."""
    cache = shared_prompt_cache(model, batch, draws, batch["input_ids"].shape[1] + options["max_new_tokens"])
    if cache is None:
        return model.generate(**batch, num_return_sequences=draws, cache_implementation="static", **options)
    expanded = {k: v.repeat_interleave(draws, dim=0) for k, v in batch.items()}
    return model.generate(**expanded, **{_cache_keyword(model): cache}, **options)


def _cache_keyword(model) -> str:
    """What generate and prepare_inputs_for_generation call the cache: ``cache`` from transformers 5.24
    (``past_key_values`` is deprecated there and goes in a later release), ``past_key_values`` before."""
    return (
        "cache" if "cache" in inspect.signature(model.prepare_inputs_for_generation).parameters else "past_key_values"
    )


def shared_prompt_cache(model, batch, draws: int, max_len: int):
    """A ``StaticCache`` holding each prompt but its last token, encoded once and repeated for its ``draws``.

    ``generate`` with ``num_return_sequences`` encodes each prompt once per
    sample (about 15 % of the call on the default model at n = 4). This is
    transformers' documented prompt-reuse pattern instead: a forward fills a
    cache, ``generate`` continues from it (its first step encodes the prompts'
    last tokens, so it samples from the same logits as ever). Positions and the
    mask come from the same rules ``generate`` applies to a left-padded batch.

    None (the caller lets ``generate`` encode the copies) with one draw, a
    one-token prompt, a model ``generate`` gives no standard cache (its own
    state, e.g. recurrent models), or a model whose cache is not plain
    full-attention layers on both sides (sliding windows, linear attention):
    copying those layer by layer would not be the same cache.
    """
    from transformers import DynamicCache, DynamicLayer, StaticCache, StaticLayer

    ids, mask = batch["input_ids"], batch["attention_mask"]
    if draws < 2 or ids.shape[1] < 2:
        return None
    # generate's own test for models that keep their state outside a Cache.
    standard = getattr(model, "_supports_default_dynamic_cache", None)
    if standard is None or not standard():
        return None
    prompt = DynamicCache(config=model.config)
    static = StaticCache(config=model.config, max_cache_len=max_len)
    if not static.layers or any(type(layer) is not StaticLayer for layer in static.layers):
        return None
    head, head_mask = ids[:, :-1], mask[:, :-1]
    accepts = inspect.signature(model.forward).parameters
    extra = {}
    if "position_ids" in accepts:
        # As generate derives them: a left-padded prompt's first real token is position 0.
        extra["position_ids"] = (head_mask.long().cumsum(-1) - 1).masked_fill(head_mask == 0, 0)
    if "logits_to_keep" in accepts:
        extra["logits_to_keep"] = 1  # only the cache is wanted, not a vocabulary row per prompt token
    inputs = model.prepare_inputs_for_generation(
        head,
        **{_cache_keyword(model): prompt},
        attention_mask=head_mask,
        use_cache=True,
        is_first_iteration=True,
        **extra,
    )
    model(**inputs)
    if len(prompt.layers) != len(static.layers) or any(type(layer) is not DynamicLayer for layer in prompt.layers):
        return None
    prompt.batch_repeat_interleave(draws)
    for index, layer in enumerate(prompt.layers):
        static.update(layer.keys, layer.values, index)
    return static


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD.

    A decoder other than the Rust tokenizers (a slow tokenizer of a local base
    model, another engine) can hand back lone surrogates, which SQLite, JSON files
    and tokenizers refuse: one of them would fail the whole rework phase. As
    U+FFFD, the judges see them and reject the sample with a reason.
    """
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _until_stop(seq: list[int], stops: list[int]) -> list[int]:
    for i, tok in enumerate(seq):
        if tok in stops:
            return seq[: i + 1]
    return seq
