"""Bytes of a corpus file to text, or the reason the file is not text.

Accepted: UTF-8 (a byte-order mark is dropped), and UTF-32 / UTF-16 when they
start with a byte-order mark (converted). Everything else is refused with a
reason rather than guessed at: invalid UTF-8, NUL bytes or a high share of
control characters (binary data). Legacy 8-bit encodings are deliberately not
guessed: a wrong guess silently corrupts training text, a refusal tells the user.
"""

from __future__ import annotations

import codecs

from selfloop.corpus.normalize import control_ratio
from selfloop.records import Reason

# Longest BOM first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode(data: bytes, max_control_ratio: float) -> str | Reason:
    encoding, body = "utf-8", data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom) :]
            break
    if encoding == "utf-8":
        nul = body.find(b"\x00")
        if nul >= 0:
            return Reason("binary", f"NUL byte at offset {nul}")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        label = "not_utf8" if encoding == "utf-8" else "bad_encoding"
        return Reason(
            label, f"invalid {encoding} at byte {e.start} ({e.reason}); only UTF-8 and BOM-marked UTF-16/32 are read"
        )
    ratio = control_ratio(text)
    if ratio > max_control_ratio:
        return Reason(
            "binary", f"control characters are {ratio:.1%} of the text > max_control_ratio {max_control_ratio:.1%}"
        )
    return text
