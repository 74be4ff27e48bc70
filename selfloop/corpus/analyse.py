"""The CPU part of ingesting one file: bytes to prepared documents with their MinHash signatures.

Covers decompression, decoding, parsing, normalization, quality filters, content hashes and MinHash signatures
(``analyse_file``, a pure function of the bytes, the reader and the ingest settings; run in worker processes for a
scan).

Does not cover: reading files, anything that depends on the corpus already stored (exact and near duplicates,
held-out split of a text seen before) or writes; that is ``selfloop.ingest``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rensa import RMinHash

from selfloop.config import IngestConfig
from selfloop.corpus.decode import decode, decompress
from selfloop.corpus.dedup import minhashes
from selfloop.corpus.formats import Rejected, parse
from selfloop.corpus.normalize import normalize_newlines
from selfloop.corpus.pipeline import Prepared, prepare
from selfloop.records import Reason


@dataclass(frozen=True)
class Analysed:
    item: Rejected | Prepared
    # The MinHash signature of a document that passes the filters and is near-deduplicated;
    # computed even when the document turns out to be an exact duplicate (rare), so the
    # store never waits. rensa's signatures pickle compactly, so they cross the process
    # boundary as they are.
    minhash: RMinHash | None


def analyse_file(data: bytes, fmt: str, cfg: IngestConfig) -> list[Analysed] | Reason:
    """The documents of one file in file order, or why the whole file is refused."""
    data = decompress(data, int(cfg.max_file_mb * 2**20))
    if isinstance(data, Reason):
        return data
    text = decode(data, cfg.max_control_ratio)
    if isinstance(text, Reason):
        return text
    items = parse(
        normalize_newlines(text),
        fmt,
        chunk_chars=cfg.chunk_chars,
        max_json_depth=cfg.max_json_depth,
        fields=cfg.json_fields,
    )
    if isinstance(items, Reason):
        return items
    if not items:
        # Often a file caught between create and write; examined again once it changes.
        return Reason("empty", "a zero-length file" if not data else "only blank lines or whitespace")
    prepared = [item if isinstance(item, Rejected) else prepare(item, cfg) for item in items]
    # Near-dedup looks at the documents that pass the filters: their signatures in one call.
    wanted = [
        i for i, p in enumerate(prepared) if isinstance(p, Prepared) and p.drop is None and p.dedup_text is not None
    ]
    sigs = minhashes(
        [prepared[i].dedup_text for i in wanted], num_perm=cfg.minhash_perm, shingle_words=cfg.shingle_words
    )
    by_item = dict(zip(wanted, sigs, strict=True))
    return [Analysed(p, by_item.get(i)) for i, p in enumerate(prepared)]
