"""Build the labelled judge set that ships with the tests (tests/data/judge/), from text in this repository.

    python -m bench.judge_set            # writes tests/data/judge/tune.jsonl and heldout.jsonl
    python -m bench.judge_set --stdlib /tmp/stdlib.jsonl   # a part from outside the repo (not shipped)

Each line is what ``selfloop judge eval`` reads: ``{"kind", "prompt", "a", "b", "label", "why"}``. A prose
paragraph is cut into a prompt (its first words) and its clean continuation; then

- ``bad`` items: B is garbage of one kind (``why``) and A the clean continuation;
- ``good`` items: B is the clean continuation and A a damaged copy of it (typos, dropped words, ...).

Two parts from different sources, so that one can stay out of tuning: ``tune`` from README.md, RELIABILITY.md and
the docstrings of some of selfloop's packages, ``heldout`` from BENCHMARKS.md, bench/, sandbox/ and the docstrings
of the other packages; the held-out part also has garbage and damage
kinds the tuned part lacks (``keyboard_mash``, ``half_gibberish``, ``merged_words``, ``case_noise``). Deterministic:
the same repository gives the same files. ``--stdlib FILE`` writes a third part, with every kind, from the
docstrings of Python standard library packages (text no rule was written against, and none the starter corpus
holds); it depends on the Python version, so it is a check to run, not a file to ship.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import string
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "judge"
STOP = ["the", "of", "and", "to", "a", "in", "that", "is", "be", "with", "have", "it", "for", "on", "as", "this"]

GARBAGE_TUNE = ["code_gibberish", "newline_flood", "stub", "stopword_salad", "shuffled_words", "repeated_lines"]
GARBAGE_HELDOUT = GARBAGE_TUNE + ["keyboard_mash", "half_gibberish"]
DAMAGE_TUNE = ["typos", "dropped_words", "newline_flood", "duplicated_half"]
DAMAGE_HELDOUT = DAMAGE_TUNE + ["merged_words", "case_noise"]


def prose_paragraphs(text: str, min_words: int = 25) -> list[str]:
    """Paragraphs of running prose: no code fences, tables, headings or lists; lines joined."""
    text = re.sub(r"```.*?```", "\n\n", text, flags=re.S)
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if not lines or any(ln.startswith(("|", "#", "-", "*", ">", "    ", "$")) for ln in lines):
            continue
        para = " ".join(lines)
        if len(para.split()) >= min_words and para.count("`") < 8 and para[-1:] in ".!?":
            out.append(para)
    return out


def docstrings(folder: Path, pattern: str = "**/*.py") -> list[str]:
    """Prose paragraphs of the docstrings of the Python files under ``folder`` that match ``pattern``."""
    out = []
    for path in sorted(folder.glob(pattern)):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.extend(prose_paragraphs(doc))
    return out


def code_lines() -> list[str]:
    lines = []
    for path in sorted((ROOT / "selfloop" / "judge").glob("*.py")):
        lines += [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if len(ln.strip()) > 20]
    return lines


def split(para: str, rng: random.Random) -> tuple[str, str]:
    words = para.split(" ")
    cut = max(6, int(len(words) * rng.uniform(0.3, 0.5)))
    return " ".join(words[:cut]) + " ", " ".join(words[cut:])


# --------------------------------------------------------------------------- garbage (B, label bad)


def garbage(kind: str, prompt: str, cont: str, rng: random.Random, code: list[str]) -> str:
    words = cont.split()
    if kind == "code_gibberish":
        # Code-shaped noise: pieces of real code lines, characters shuffled within each piece.
        pieces = []
        for _ in range(rng.randint(3, 6)):
            line = list(rng.choice(code))
            i = rng.randrange(max(1, len(line) - 30))
            chunk = line[i : i + rng.randint(15, 30)]
            rng.shuffle(chunk)
            pieces.append("".join(chunk))
        return " ".join(pieces)
    if kind == "newline_flood":
        return " ".join(words[: rng.randint(1, 4)]) + "\n" * rng.randint(50, 200)
    if kind == "stub":
        return "".join(rng.choice(string.ascii_letters + " .") for _ in range(6))
    if kind == "stopword_salad":
        return " ".join(rng.choice(STOP) for _ in range(len(words))) + "."
    if kind == "shuffled_words":
        w = list(words)
        rng.shuffle(w)
        return " ".join(w)
    if kind == "repeated_lines":
        sentence = " ".join(words[: rng.randint(5, 10)])
        return "\n".join([sentence] * rng.randint(6, 12))
    if kind == "keyboard_mash":
        rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
        return " ".join(
            "".join(rng.choice(rng.choice(rows)) for _ in range(rng.randint(2, 9))) for _ in range(len(words))
        )
    if kind == "half_gibberish":
        half = words[: len(words) // 2]
        noise = ["".join(rng.sample(w, len(w))) + rng.choice(["", "(", ")", "=", ";"]) for w in words[len(half) :]]
        return " ".join(half + noise)
    raise ValueError(kind)


# --------------------------------------------------------------------------- damage (A, label good)


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    op = rng.choice(["swap", "drop", "insert", "replace"])
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "insert":
        return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]


def damage(kind: str, cont: str, rng: random.Random) -> str:
    words = cont.split(" ")
    if kind == "typos":
        return " ".join(typo(w, rng) if rng.random() < 0.25 else w for w in words)
    if kind == "dropped_words":
        return " ".join(w for w in words if rng.random() > 0.25)
    if kind == "newline_flood":
        cut = rng.randint(1, max(1, len(words) // 3))
        return " ".join(words[:cut]) + "\n" * rng.randint(30, 200) + " ".join(words[cut:])
    if kind == "duplicated_half":
        half = words[: len(words) // 2]
        return " ".join(words + half)
    if kind == "merged_words":
        return "".join(w if rng.random() < 0.5 else w + " " for w in words).strip()
    if kind == "case_noise":
        return "".join(c.upper() if rng.random() < 0.3 else c.lower() for c in cont)
    raise ValueError(kind)


def chat_prompt(prompt: str) -> str:
    """A question about the paragraph's first words, as a user would ask it."""
    return f"Please continue this passage: {prompt.strip()}"


def build(paragraphs: list[str], garbage_kinds: list[str], damage_kinds: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    code = code_lines()
    items = []
    for n, para in enumerate(paragraphs):
        prompt, cont = split(para, rng)
        kind = "chat" if n % 4 == 3 else "text"
        shown = chat_prompt(prompt) if kind == "chat" else prompt
        for g in garbage_kinds:
            items.append({"kind": kind, "prompt": shown, "a": cont, "b": garbage(g, prompt, cont, rng, code)})
            items[-1].update(label="bad", why=g)
        for d in damage_kinds:
            items.append({"kind": kind, "prompt": shown, "a": damage(d, cont, rng), "b": cont})
            items[-1].update(label="good", why=d)
    return items


def sources() -> dict[str, list[str]]:
    """Paragraphs per part, from different files (the starter corpus is orig/, which the reference learns from)."""
    read = lambda name: (ROOT / name).read_text(encoding="utf-8")  # noqa: E731
    pkg = ROOT / "selfloop"
    tune = prose_paragraphs(read("README.md")) + prose_paragraphs(read("RELIABILITY.md"))
    for name in ("corpus", "ingest", "judge", "rework", "sandbox", "store"):
        tune += docstrings(pkg / name)
    heldout = prose_paragraphs(read("BENCHMARKS.md")) + docstrings(ROOT / "bench") + docstrings(ROOT / "sandbox")
    for name in ("frontier", "loop", "model", "tasks", "train"):
        heldout += docstrings(pkg / name)
    return {"tune": tune, "heldout": heldout}


STDLIB = ("email", "http", "logging", "concurrent", "json", "urllib", "xml", "importlib", "unittest", "asyncio")


def stdlib_paragraphs(n: int = 75) -> list[str]:
    """``n`` paragraphs drawn (seeded) from the docstrings of the ``STDLIB`` packages, as many as the held-out part."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return random.Random(2026).sample([p for name in STDLIB for p in docstrings(root / name)], n)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.judge_set", description=__doc__.split("\n\n")[0])
    args.add_argument("--stdlib", type=Path, help="write only a part from the standard library's docstrings here")
    args = args.parse_args(argv)
    if args.stdlib:
        parts = {args.stdlib: build(stdlib_paragraphs(), GARBAGE_HELDOUT, DAMAGE_HELDOUT, seed=2026)}
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        src = sources()
        parts = {
            OUT / "tune.jsonl": build(src["tune"], GARBAGE_TUNE, DAMAGE_TUNE, seed=18),
            OUT / "heldout.jsonl": build(src["heldout"], GARBAGE_HELDOUT, DAMAGE_HELDOUT, seed=1818),
        }
    for path, items in parts.items():
        path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
        good = sum(i["label"] == "good" for i in items)
        print(f"{path}: {len(items)} items ({good} good, {len(items) - good} bad)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
