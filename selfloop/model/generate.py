"""Batched sampling from a (model, tokenizer) pair.

Covers: plain-text and chat prompts (chat through ``apply_chat_template`` with
``add_generation_prompt=True``), left padding for the decoder-only model,
``model.generate`` (KV cache), temperature / top-p / greedy, n samples per
prompt, stopping at end of turn or eos, reproducibility from a seed (the global
RNG is forked, not disturbed), and the token counts and speed of the call.

Does not cover: choosing prompts (rework, evaluation) or which model is current
(``selfloop.model.holder``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass


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
    """Sample ``n`` continuations per prompt. ``temperature == 0`` is greedy (one sample, repeated)."""
    import torch

    from selfloop.model.tokenizer import stop_token_ids

    greedy = temperature <= 0
    draws = 1 if greedy else n
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit:
        # Keep prompt + continuation inside the context: the prompt loses its oldest tokens.
        max_new_tokens = max(1, min(max_new_tokens, limit // 2))
    keep = (limit - max_new_tokens) if limit else None
    stops = stop_token_ids(tokenizer)
    device = next(model.parameters()).device
    texts: list[list[str]] = []
    counts: list[list[int]] = []
    rendered = render_prompts(tokenizer, prompts, chat)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        for start in range(0, len(rendered), batch_size):
            chunk = rendered[start : start + batch_size]
            ids = [tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"] for p in chunk]
            ids = [(i[-keep:] if keep else i) or [tokenizer.eos_token_id] for i in ids]
            batch = tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt").to(device)
            out = model.generate(
                **batch,
                do_sample=not greedy,
                temperature=temperature if not greedy else None,
                top_p=top_p if not greedy else None,
                top_k=None,
                max_new_tokens=max_new_tokens,
                num_return_sequences=draws,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, batch["input_ids"].shape[1] :].tolist()
            for i in range(len(chunk)):
                samples = [_until_stop(seq, stops) for seq in new[i * draws : (i + 1) * draws]]
                samples = samples * n if greedy else samples
                texts.append([valid_unicode(tokenizer.decode(s, skip_special_tokens=True)) for s in samples])
                counts.append([len(s) for s in samples])
    return Generation(texts, counts, time.perf_counter() - started)


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


def cmd_generate(args) -> int:
    """`selfloop generate PROMPT`: sample from the current champion."""
    from selfloop.config import load_config
    from selfloop.errors import SelfloopError
    from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
    from selfloop.model.registry import Registry

    cfg, paths = load_config(args.config)
    path = Registry(paths.models).current_path()
    if path is None:
        raise SelfloopError(f"no current model in {paths.models} yet (run `selfloop cycle --once`)")
    device = resolve_device(cfg.model)
    model, tokenizer = load_pretrained(path, device=device, dtype=resolve_dtype(cfg.model, device))
    result = generate(
        model, tokenizer, [args.prompt], chat=args.chat, n=args.n,
        max_new_tokens=args.max_new_tokens or cfg.rework.max_new_tokens,
        temperature=cfg.rework.temperature, top_p=cfg.rework.top_p, seed=args.seed,
    )
    for i, text in enumerate(result.texts[0]):
        print(f"--- sample {i + 1} ({result.new_tokens[0][i]} tokens)")
        print(text if args.chat else args.prompt + text)
    print(f"--- {path.name}: {result.tokens_per_s:.0f} tokens/s")
    return 0
