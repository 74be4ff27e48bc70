"""What the benchmarks' throwaway projects hold: the quick-mode config, the starter prose, and
synthetic corpora scaled to a size. The projects themselves come from selfloop.testing.

Does not cover: measuring anything.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from selfloop.cli.project import starter_corpus
from selfloop.testing import tiny_config

# Quick mode: the shared tiny model with the benchmarks' own steps and rework sizes; the learning
# rate and the generations kept stay at the defaults, as quick mode always had them.
TINY: dict[str, Any] = tiny_config(
    {
        "model": {"keep_generations": 5},
        "train": {"gen0_steps": 12, "max_steps": 12, "save_steps": 6, "eval_samples": 1, "learning_rate": 1e-3},
        "rework": {"enabled": True, "candidates_per_cycle": 8, "max_new_tokens": 16, "samples_per_prompt": 2},
    }
)


def starter_texts() -> list[str]:
    """The prose of the starter corpus (a real, mixed English text sample)."""
    here = starter_corpus() / "orig" / "prose"
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
