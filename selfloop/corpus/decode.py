"""Bytes of a corpus file to text, or the reason the file is not text.

Compressed files (gzip, zstd, bzip2, told by their header, not their name) are decompressed first, never past a
size cap (``decompress``). Accepted: UTF-8 (a byte-order mark is dropped), and UTF-32 / UTF-16 when they
start with a byte-order mark (converted). Everything else is refused with a
reason rather than guessed at: invalid UTF-8, NUL bytes or a high share of
control characters (binary data). Legacy 8-bit encodings are deliberately not
guessed: a wrong guess silently corrupts training text, a refusal tells the user.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import zlib

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


_HOW = "selfloop reads text (UTF-8): convert the file to text, or list it in watch.ignore"


def decompress(data: bytes, limit: int) -> bytes | Reason:
    """``data`` decompressed when it starts with a gzip, zstd or bzip2 header, else as it is.

    Reads at most ``limit + 1`` decompressed bytes, so a decompression bomb costs no more
    memory than a file at the limit; past it the file is refused.
    """
    errors: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)  # damaged or truncated data
    if data.startswith(b"\x1f\x8b"):
        kind, stream = "gzip", gzip.GzipFile(fileobj=io.BytesIO(data))
    elif data.startswith(b"BZh") and data[4:10] == b"1AY&SY":  # block size digit, then the block magic
        kind, stream = "bzip2", bz2.BZ2File(io.BytesIO(data))
    elif data.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard  # only for .zst files

        kind, stream = "zstd", zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        errors += (zstandard.ZstdError,)
    else:
        return data
    chunks, total = [], 0
    try:
        with stream:
            while total <= limit and (chunk := stream.read(min(1 << 20, limit + 1 - total))):
                chunks.append(chunk)
                total += len(chunk)
    except errors as e:
        return Reason("bad_archive", f"{kind} data does not decompress ({e}); recompress or replace the file")
    if total > limit:
        return Reason(
            "too_large",
            f"{kind} data decompresses to more than {limit / 2**20:.1f} MiB (max_file_mb); "
            "not read further: split it into smaller files or raise max_file_mb",
        )
    return b"".join(chunks)


def decode(data: bytes, max_control_ratio: float) -> str | Reason:
    encoding, body = "utf-8", data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom) :]
            break
    if encoding == "utf-8":
        if body[257:262] == b"ustar":
            return Reason("archive", "a tar archive; unpack it under orig/ instead")
        nul = body.find(b"\x00")
        if nul >= 0:
            return Reason("binary", f"NUL byte at offset {nul}; {_HOW}")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        label = "not_utf8" if encoding == "utf-8" else "bad_encoding"
        return Reason(
            label,
            f"invalid {encoding} at byte {e.start} ({e.reason}); only UTF-8 and BOM-marked UTF-16/32 are read: "
            "re-encode it as UTF-8 (iconv -t UTF-8)",
        )
    ratio = control_ratio(text)
    if ratio > max_control_ratio:
        return Reason(
            "binary",
            f"control characters are {ratio:.1%} of the text > max_control_ratio {max_control_ratio:.1%}; {_HOW}",
        )
    return text
