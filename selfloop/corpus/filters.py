"""Quality filters for one normalized document: each returns None (keep) or a Reason (drop).

Covered: empty, too_short, too_long, symbol_ratio, dup_line_fraction and
top_ngram_fraction (Gopher-style repetition, Rae et al. 2021). The binary check
(``non_text``) runs on the raw text before normalization strips control
characters, so it lives apart in :func:`non_text`.

Not covered: language identification, toxicity, perplexity scoring (the judge
does model-based scoring).
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Callable

from selfloop.config import IngestConfig
from selfloop.corpus.normalize import control_ratio
from selfloop.records import Reason

Filter = Callable[[str, IngestConfig], Reason | None]

# Whitespace, and word characters (str.isalnum() or "_", the re module's \w) or whitespace, as
# sets of ASCII bytes: bytes.translate deletes them in one C pass. No character is both \w and
# \s, so what is left of the second deletion are the visible characters that are not word characters.
_ASCII_SPACE = bytes(b for b in range(128) if chr(b).isspace())
_ASCII_WORD_OR_SPACE = bytes(b for b in range(128) if chr(b).isspace() or chr(b).isalnum() or chr(b) == "_")
_NON_ASCII_BYTES = bytes(range(128, 256))
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def non_text(raw: str, cfg: IngestConfig) -> Reason | None:
    ratio = control_ratio(raw)
    if ratio > cfg.max_control_ratio:
        return Reason("non_text", f"control characters {ratio:.1%} > max_control_ratio {cfg.max_control_ratio:.1%}")
    return None


def empty(text: str, cfg: IngestConfig) -> Reason | None:
    return Reason("empty", "no visible characters after normalization") if not text.strip() else None


def too_short(text: str, cfg: IngestConfig) -> Reason | None:
    n = len(text)
    return Reason("too_short", f"{n} chars < min_chars {cfg.min_chars}") if n < cfg.min_chars else None


def too_long(text: str, cfg: IngestConfig) -> Reason | None:
    n = len(text)
    return Reason("too_long", f"{n} chars > max_chars {cfg.max_chars}") if n > cfg.max_chars else None


def symbol_ratio(text: str, cfg: IngestConfig) -> Reason | None:
    # Underscores count as word characters: identifiers in code are not noise.
    visible, symbols = _visible_and_symbols(text)
    if not visible:
        return None
    ratio = symbols / visible
    if ratio > cfg.max_symbol_ratio:
        return Reason(
            "symbol_ratio", f"symbols are {ratio:.0%} of visible chars > max_symbol_ratio {cfg.max_symbol_ratio:.0%}"
        )
    return None


def _visible_and_symbols(text: str) -> tuple[int, int]:
    """(characters that are not whitespace, of those the ones that are not word characters either).

    ASCII characters are counted with ``bytes.translate`` over the UTF-8 bytes (an ASCII
    byte is always a whole character there); the few others one by one, with the
    classes the re module uses (``\\s``: ``str.isspace``, ``\\w``: ``str.isalnum`` or ``_``).
    """
    data = text.encode("utf-8", "surrogatepass")
    if data.isascii():
        return len(data.translate(None, _ASCII_SPACE)), len(data.translate(None, _ASCII_WORD_OR_SPACE))
    ascii_part = data.translate(None, _NON_ASCII_BYTES)
    visible = len(ascii_part.translate(None, _ASCII_SPACE))
    symbols = len(ascii_part.translate(None, _ASCII_WORD_OR_SPACE))
    for ch, n in Counter(_NON_ASCII.findall(text)).items():
        if not ch.isspace():
            visible += n
            symbols += 0 if ch.isalnum() else n
    return visible, symbols


def dup_line_fraction(text: str, cfg: IngestConfig) -> Reason | None:
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) < 4:  # a repeat among two or three lines says nothing about spam
        return None
    counts = Counter(lines)
    repeated = sum(n - 1 for n in counts.values() if n > 1)
    frac = repeated / len(lines)
    if frac > cfg.max_dup_line_fraction:
        line, n = counts.most_common(1)[0]
        return Reason(
            "dup_line_fraction",
            f"{frac:.0%} of lines repeat an earlier line > {cfg.max_dup_line_fraction:.0%} (e.g. {line[:40]!r} x{n})",
        )
    return None


def top_ngram_fraction(text: str, cfg: IngestConfig, n: int = 3) -> Reason | None:
    words = text.split()  # whitespace-separated, as the regex \S+ would find them
    if len(words) < max(cfg.repetition_min_words, 2 * n):
        return None
    total = sum(map(len, words))
    # An n-gram occurring c times covers at most n x (the most any one word covers) chars:
    # each of its n words occurs at least c times. Below the limit, counting n-grams (the
    # costlier step) cannot change the verdict; ordinary prose stops here.
    counts = Counter(words)
    if n * max(map(operator.mul, counts.values(), map(len, counts))) / total <= cfg.max_top_ngram_fraction:
        return None
    grams = Counter(zip(*(words[i:] for i in range(n))))
    gram, count = grams.most_common(1)[0]
    if count < 2:  # a 3-gram that occurs once is not repetition, however short the text
        return None
    frac = count * sum(len(w) for w in gram) / total
    if frac > cfg.max_top_ngram_fraction:
        return Reason(
            "top_ngram_fraction",
            f"3-gram {' '.join(gram)[:40]!r} x{count} covers {frac:.0%} of word chars"
            f" > {cfg.max_top_ngram_fraction:.0%}",
        )
    return None


FILTERS: tuple[Filter, ...] = (empty, too_short, too_long, symbol_ratio, dup_line_fraction, top_ngram_fraction)


def first_failure(text: str, cfg: IngestConfig) -> Reason | None:
    """The first filter that drops the (normalized) text, or None when all keep it."""
    for f in FILTERS:
        reason = f(text, cfg)
        if reason is not None:
            return reason
    return None
