"""Throwaway projects for the benchmarks: the shipped defaults (or a tiny model in quick
mode), the starter corpus, and synthetic corpora scaled to a size.

Does not cover: measuring anything.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import tomli_w

from selfloop.cli.project import init_project
from selfloop.config import Config, ProjectPaths, load_config

# Quick mode: 2 layers x 32 wide, so a training run takes seconds.
TINY: dict[str, Any] = {
    "model": {"vocab_size": 320, "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64},
    "train": {
        "gen0_steps": 12,
        "max_steps": 12,
        "batch_size": 8,
        "block_size": 32,
        "save_steps": 6,
        "log_steps": 2,
        "eval_batches": 2,
        "eval_samples": 1,
        "eval_sample_tokens": 8,
        "warmup_ratio": 0.0,
    },
    "rework": {"candidates_per_cycle": 8, "max_new_tokens": 16, "samples_per_prompt": 2},
}


def make_project(
    root: Path, overrides: dict[str, Any] | None = None, *, starter: bool = True
) -> tuple[Path, Config, ProjectPaths]:
    """``selfloop init`` into ``root``; ``overrides`` (a partial config) replaces the shipped config.toml."""
    init_project(root, starter=starter)
    config_path = root / "config.toml"
    if overrides:
        config_path.write_text(tomli_w.dumps(overrides))
    cfg, paths = load_config(config_path, env=False)
    return config_path, cfg, paths


def starter_texts() -> list[str]:
    """The prose of the starter corpus (a real, mixed English text sample)."""
    here = Path(__file__).resolve().parent.parent / "corpus" / "orig" / "prose"
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(here.glob("*.txt"))]


WORDS = (
    "the of and to in is was for that with as on by at from his her which are this be had not were or but "
    "river stone garden window winter letter market engine harbour signal forest teacher lantern valley "
    "copper ladder kitchen orchard meadow thunder compass bridge candle village journey silver shadow"
).split()


def synthetic_file(seed: int, chars: int) -> str:
    """Distinct paragraphs of plausible word salad (passes the quality filters, no near duplicates)."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        sentences = []
        for _ in range(rng.randint(4, 8)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
            words.append(f"n{rng.randrange(10**9)}")  # keeps every paragraph's shingles unique
            sentences.append(" ".join(words).capitalize() + ".")
        para = " ".join(sentences)
        out.append(para)
        size += len(para) + 2
    return "\n\n".join(out) + "\n"


def write_corpus(folder: Path, n_files: int, chars_per_file: int, seed: int = 0) -> int:
    """``n_files`` synthetic .txt files; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n_files):
        text = synthetic_file(seed * 100_003 + i, chars_per_file)
        (folder / f"doc{i:05d}.txt").write_text(text, encoding="utf-8")
        total += len(text.encode())
    return total
