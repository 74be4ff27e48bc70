"""Rework generation throughput: selfloop's batched ``generate`` against naive batch-1 ``generate``.

Both sample the same prompts (starts of starter-corpus paragraphs, like the
rewrite strategy's prefixes) with the rework defaults (n samples per prompt,
``max_new_tokens``, temperature, top-p) from the same model: the default-size
scratch GPT-2 with a tokenizer trained on the starter corpus. Tokens are counted
up to and including each sample's stop token, so early stops count the same way
on both sides. The baseline calls ``model.generate`` once per sample.

Cost growth: the batched path at 1x, 4x and 16x the number of prompts.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Recorder, growth, quick_flag, say
from bench.project import TINY, starter_texts

NAME = "generation"


def prompts_from(texts: list[str], count: int, chars: int) -> list[str]:
    paragraphs = [p.strip() for t in texts for p in t.split("\n\n") if len(p.strip()) > 80]
    return [paragraphs[i % len(paragraphs)][:chars] for i in range(count)]


def naive(
    model, tokenizer, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int
) -> dict[str, Any]:
    """One ``model.generate`` call per sample, batch of one: the baseline."""
    import torch

    from selfloop.model.tokenizer import stop_token_ids

    stops = stop_token_ids(tokenizer)
    # The same context rule as selfloop's generate: the prompt keeps its newest tokens.
    keep = model.config.max_position_embeddings - max_new_tokens
    tokens = 0
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            ids = tokenizer(p, return_tensors="pt", add_special_tokens=False, verbose=False)
            ids = {k: v[:, -keep:] for k, v in ids.items()}
            for _ in range(n):
                out = model.generate(
                    **ids,
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=None,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=stops,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new = out[0, ids["input_ids"].shape[1] :].tolist()
                cut = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
                tokens += cut
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": tokens / seconds}


def batched(model, tokenizer, prompts: list[str], rc) -> dict[str, Any]:
    from selfloop.model.generate import generate

    out = generate(
        model,
        tokenizer,
        prompts,
        n=rc.samples_per_prompt,
        max_new_tokens=rc.max_new_tokens,
        temperature=rc.temperature,
        top_p=rc.top_p,
        seed=rc.seed,
        batch_size=rc.batch_size,
    )
    tokens = sum(sum(c) for c in out.new_tokens)
    return {"tokens": tokens, "seconds": round(out.seconds, 3), "tokens_per_s": out.tokens_per_s}


def run(quick: bool) -> Recorder:
    from transformers import set_seed

    from selfloop.config import Config
    from selfloop.model.factory import build_scratch_model
    from selfloop.model.tokenizer import train_tokenizer

    rec = Recorder(NAME, quick, "python -m bench.generation" + (" --quick" if quick else ""))
    cfg = Config(**TINY) if quick else Config()
    rc = cfg.rework
    texts = starter_texts()
    tokenizer = train_tokenizer(texts, cfg.model.vocab_size, max_length=cfg.model.n_positions)
    set_seed(0)
    model = build_scratch_model(cfg.model, tokenizer).eval()
    # Prompts of about half the context, like the rewrite strategy's prefixes.
    prompt_chars = 2 * cfg.model.n_positions
    count = 4 if quick else rc.batch_size
    prompts = prompts_from(texts, count, prompt_chars)
    batched(model, tokenizer, prompts[:2], rc)  # warm-up (first-call allocations)
    b = batched(model, tokenizer, prompts, rc)
    say(
        f"[generation] batched generate (batch {rc.batch_size} prompts x "
        f"{rc.samples_per_prompt} samples): {b['tokens_per_s']:.0f} tokens/s"
    )
    nv = naive(
        model,
        tokenizer,
        prompts,
        n=rc.samples_per_prompt,
        max_new_tokens=rc.max_new_tokens,
        temperature=rc.temperature,
        top_p=rc.top_p,
        seed=rc.seed,
    )
    say(f"[generation] naive batch-1 generate: {nv['tokens_per_s']:.0f} tokens/s")
    speedup = b["tokens_per_s"] / nv["tokens_per_s"]
    say(f"[generation] speed-up {speedup:.2f}x (target >= 6x)")

    sizes = [1, 4, 16]
    base = 2 if quick else 4  # prompts at 1x (each with n samples)
    runs = [batched(model, tokenizer, prompts_from(texts, base * m, prompt_chars), rc) for m in sizes]
    scaling = growth(sizes, [r["seconds"] for r in runs])
    secs = ", ".join(f"{r['seconds']:.2f}s" for r in runs)
    say(f"[generation] batched at 1x/4x/16x prompts: {secs} -> {scaling['growth']} (exponent {scaling['exponent']})")
    rec.figures = {
        "model": {
            "n_layer": cfg.model.n_layer,
            "n_embd": cfg.model.n_embd,
            "vocab": len(tokenizer),
            "n_positions": cfg.model.n_positions,
        },
        "rework": {
            "prompts": count,
            "samples_per_prompt": rc.samples_per_prompt,
            "max_new_tokens": rc.max_new_tokens,
            "batch_size": rc.batch_size,
            "temperature": rc.temperature,
            "top_p": rc.top_p,
        },
        "batched": b,
        "naive_batch1": nv,
        "speedup": round(speedup, 3),
        "target_speedup": 6.0,
        "scaling_prompts": {**scaling, "tokens_per_s": [round(r["tokens_per_s"], 1) for r in runs]},
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    quick = quick_flag(argv)
    rec = run(quick)
    say(f"[generation] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
