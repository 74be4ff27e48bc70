"""Rebuild the starter corpus from license-clean sources.

It is package data, ``selfloop/starter/corpus/orig`` (what ``selfloop init`` copies), and the checkout's
``corpus/orig`` is a copy of it for ``make run``; a test keeps the two identical, so write both:
``python corpus/build_starter.py && cp -r selfloop/starter/corpus/orig/. corpus/orig/``.

Sources (see README-LICENSES.md):
- The Jargon File 4.4.7 (public domain), from Debian's ``jargon-text`` package:
  ``apt-get install jargon-text`` provides /usr/share/doc/jargon-text/jargon.txt.gz.
- The Zen of Python and a few pure-Python standard library modules (PSF License),
  from the running interpreter.
- Chat records generated here: arithmetic, unit conversions, word and string facts.
  Every answer is computed, so every record is correct.

Usage: python corpus/build_starter.py [--jargon PATH] [--out selfloop/starter/corpus/orig]
Deterministic: the same sources give byte-identical files.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import json
import random
import sysconfig
from pathlib import Path

STDLIB_MODULES = ["bisect", "colorsys", "fnmatch", "fractions", "glob", "graphlib", "heapq", "shlex", "string", "textwrap"]

# Glossary files by first letter of the headword, so each file stays a few hundred KB.
GLOSSARY_PARTS = [("0-c", "0123456789abc"), ("d-h", "defgh"), ("i-m", "ijklm"), ("n-r", "nopqr"), ("s-z", "stuvwxyz")]


def dedent3(lines: list[str]) -> str:
    return "\n".join(line[3:] if line.startswith("   ") else line for line in lines).strip() + "\n"


def jargon(src: Path, out: Path) -> None:
    # Headings use no-break spaces ("Chapter\u00a01."); plain spaces are easier to match and to read.
    lines = gzip.open(src, "rt", encoding="utf-8").read().replace("\u00a0", " ").split("\n")
    find = lambda prefix, start=0: next(i for i in range(start, len(lines)) if lines[i].startswith(prefix))  # noqa: E731
    ch1 = find("Chapter 1. Hacker Slang")
    glossary = find("Glossary", ch1)
    first_entry = find("   :", glossary)
    appendix = find("Appendix A.", first_entry)
    bibliography = find("Bibliography", appendix)
    (out / "jargon-file-introduction.txt").write_text(dedent3(lines[ch1:glossary]), encoding="utf-8")
    (out / "jargon-file-appendices.txt").write_text(dedent3(lines[appendix:bibliography]), encoding="utf-8")
    entries: list[list[str]] = []
    for line in lines[first_entry:appendix]:
        if line.startswith("   :"):
            entries.append([])
        entries[-1].append(line)
    for name, letters in GLOSSARY_PARTS:
        part = [e for e in entries if (e[0][4:5].lower() in letters) or (name == "0-c" and not e[0][4:5].isalpha())]
        (out / f"jargon-file-lexicon-{name}.txt").write_text("".join(dedent3(e) + "\n" for e in part), encoding="utf-8")


def python_sources(out: Path) -> None:
    import this  # noqa: F401  (prints the Zen when imported; its source holds it ROT13-encoded)

    (out.parent / "prose" / "zen-of-python.txt").write_text(codecs.decode(this.s, "rot13") + "\n", encoding="utf-8")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_MODULES:
        (out / f"{name}.py").write_text((stdlib / f"{name}.py").read_text(encoding="utf-8"), encoding="utf-8")


WORDS = """apple banana garden river planet window orange silver yellow market pencil rabbit candle forest castle
bridge summer winter spring autumn number letter mirror button shadow pocket ladder basket kitten dragon rocket
island desert valley meadow harbor engine wallet jacket carpet blanket bottle butter coffee cookie dinner breakfast
doctor farmer singer teacher painter sailor author travel wonder simple gentle bright quiet happy little yellow
purple marble puzzle riddle circle square triangle minute second moment morning evening story history science
music picture camera violin guitar trumpet theater museum library kitchen bedroom office school student lesson
question answer problem reason system program compute python string integer variable function object method
network server client browser keyboard monitor printer battery signal channel memory storage folder
""".split()
WORDS = sorted(set(WORDS))
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SYSTEM = "You are a helpful assistant. Answer briefly and correctly."


def _arith(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice("+-*")
    if op == "+":
        return f"What is {a} + {b}?", f"{a} + {b} = {a + b}. The sum of {a} and {b} is {a + b}."
    if op == "-":
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", f"{a} - {b} = {a - b}. Taking {b} away from {a} leaves {a - b}."
    a, b = rng.randint(2, 19), rng.randint(2, 19)
    return f"What is {a} times {b}?", f"{a} * {b} = {a * b}. The product of {a} and {b} is {a * b}."


UNITS = [  # (question unit, answer unit, factor, explanation)
    ("hours", "minutes", 60, "each hour has 60 minutes"),
    ("minutes", "seconds", 60, "each minute has 60 seconds"),
    ("days", "hours", 24, "each day has 24 hours"),
    ("weeks", "days", 7, "each week has 7 days"),
    ("kilometers", "meters", 1000, "each kilometer is 1000 meters"),
    ("meters", "centimeters", 100, "each meter is 100 centimeters"),
    ("centimeters", "millimeters", 10, "each centimeter is 10 millimeters"),
    ("kilograms", "grams", 1000, "each kilogram is 1000 grams"),
    ("liters", "milliliters", 1000, "each liter is 1000 milliliters"),
    ("feet", "inches", 12, "each foot is 12 inches"),
    ("yards", "feet", 3, "each yard is 3 feet"),
    ("dozens", "items", 12, "a dozen is 12 items"),
]


def _units(rng: random.Random) -> tuple[str, str]:
    big, small, factor, why = rng.choice(UNITS)
    n = rng.randint(2, 30)
    return f"How many {small} are in {n} {big}?", f"There are {n * factor} {small} in {n} {big}, because {why} and {n} * {factor} = {n * factor}."


def _words(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    kind = rng.randrange(5)
    if kind == 0:
        return f'How many letters are in the word "{w}"?', f'The word "{w}" has {len(w)} letters: {", ".join(w)}.'
    if kind == 1:
        return f'Spell "{w}" backwards.', f'"{w}" spelled backwards is "{w[::-1]}".'
    if kind == 2:
        return f'Write "{w}" in capital letters.', f'"{w}" in capital letters is "{w.upper()}".'
    if kind == 3:
        c = rng.choice(sorted(set(w)))
        n = w.count(c)
        return f'How many times does the letter "{c}" appear in "{w}"?', f'The letter "{c}" appears {n} time{"s" if n != 1 else ""} in "{w}".'
    return f'What are the first and last letters of "{w}"?', f'The word "{w}" starts with "{w[0]}" and ends with "{w[-1]}".'


def _facts(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randint(1, 999)
        parity = "even" if n % 2 == 0 else "odd"
        why = "it is divisible by 2" if parity == "even" else "dividing it by 2 leaves a remainder of 1"
        return f"Is {n} even or odd?", f"{n} is {parity}, because {why}."
    if kind == 1:
        a, b = rng.sample(range(1, 1000), 2)
        return f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."
    i = rng.randrange(7)
    k = rng.randint(1, 6)
    return (f"What day of the week is {k} day{'s' if k > 1 else ''} after {DAYS[i]}?",
            f"{k} day{'s' if k > 1 else ''} after {DAYS[i]} it is {DAYS[(i + k) % 7]}.")


def chats(out: Path, n: int, seed: int = 20240601) -> None:
    rng = random.Random(seed)
    makers = [_arith, _units, _words, _facts]
    seen: set[str] = set()
    records = []
    while len(records) < n:
        question, answer = rng.choice(makers)(rng)
        if question in seen:
            continue
        seen.add(question)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if rng.random() < 0.25:
            messages.insert(0, {"role": "system", "content": SYSTEM})
        records.append(json.dumps({"messages": messages}, ensure_ascii=False))
    (out / "starter-qa.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jargon", type=Path, default=Path("/usr/share/doc/jargon-text/jargon.txt.gz"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "selfloop" / "starter" / "corpus" / "orig")
    ap.add_argument("--chats", type=int, default=3000)
    args = ap.parse_args()
    for sub in ("prose", "python", "chat"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    jargon(args.jargon, args.out / "prose")
    python_sources(args.out / "python")
    chats(args.out / "chat", args.chats)


if __name__ == "__main__":
    main()
