"""`selfloop generate PROMPT`: sample from the current champion."""

from __future__ import annotations

from typing import Any

from selfloop.config import load_config
from selfloop.errors import SelfloopError
from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
from selfloop.model.generate import generate
from selfloop.model.registry import Registry


def cmd_generate(args: Any) -> int:
    """`selfloop generate PROMPT`: sample from the current champion."""
    cfg, paths = load_config(args.config)
    path = Registry(paths.models).current_path()
    if path is None:
        raise SelfloopError(f"no current model in {paths.models} yet (run `selfloop cycle --once`)")
    device = resolve_device(cfg.model)
    model, tokenizer = load_pretrained(path, device=device, dtype=resolve_dtype(cfg.model, device))
    result = generate(
        model,
        tokenizer,
        [args.prompt],
        chat=args.chat,
        n=args.n,
        max_new_tokens=args.max_new_tokens or cfg.rework.max_new_tokens,
        temperature=cfg.rework.temperature,
        top_p=cfg.rework.top_p,
        seed=args.seed,
    )
    for i, text in enumerate(result.texts[0]):
        print(f"--- sample {i + 1} ({result.new_tokens[0][i]} tokens)")
        print(text if args.chat else args.prompt + text)
    print(f"--- {path.name}: {result.tokens_per_s:.0f} tokens/s")
    return 0
