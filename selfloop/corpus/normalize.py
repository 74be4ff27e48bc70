"""Text normalization applied to every document before it is filtered, hashed and stored.

Covers: Unicode NFC, newlines to ``\\n``, removal of control characters (except
``\\n`` and ``\\t``) and zero-width characters, trailing whitespace per line, runs
of more than two blank lines, and blank lines around the whole text. Two texts
that differ only in these respects normalize to the same string, which is what
exact deduplication relies on.

Does not touch leading indentation (code depends on it), case, or punctuation.
"""

from __future__ import annotations

import re
import unicodedata

# C0/C1 controls except \t and \n (\r is handled by the newline step first), plus the
# zero-width characters that are invisible yet split otherwise equal words apart.
_UNWANTED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]")
_TRAILING = " \t\f\v\u00a0"  # stripped from the end of every line
_BLANK_RUNS = re.compile(r"\n{4,}")  # 4 newlines = 3 blank lines


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalize(text: str) -> str:
    text = normalize_newlines(text)
    text = unicodedata.normalize("NFC", text)
    text = _UNWANTED.sub("", text)
    # Per line with rstrip: a multiline regex ending in $ tries a match at every character.
    text = "\n".join([line.rstrip(_TRAILING) for line in text.split("\n")])
    if "\n\n\n\n" in text:  # a substring search is far cheaper than the regex scan
        text = _BLANK_RUNS.sub("\n\n\n", text)
    return text.strip("\n")


# C0 control codes other than whitespace (\t \n \v \f \r are ordinary in text files), and DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])


def control_ratio(text: str) -> float:
    """Share of characters that are C0 control codes other than whitespace: high in binary data."""
    if not text:
        return 0.0
    # All are ASCII, and an ASCII byte of UTF-8 is always a whole character: count the bytes.
    data = text.encode("utf-8", "surrogatepass")
    return (len(data) - len(data.translate(None, _CONTROL_BYTES))) / len(text)
