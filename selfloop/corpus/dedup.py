"""Near-duplicate detection: MinHash signatures over word shingles, indexed with LSH (datasketch).

The index lives in memory and is incremental: built once from the signatures
stored with active documents (``documents.minhash``), then updated as documents
are accepted or removed. LSH proposes candidates; the estimated Jaccard of each
candidate is checked against the threshold so a collision alone never marks a
duplicate. Exact duplicates are found by content hash in the store, not here.

Shingle hashing: each word is hashed once (xxh3-64 of its UTF-8), and the hash of a
shingle of n consecutive words is a polynomial over their word hashes, computed for
all shingles of a document at once with numpy; its top 32 bits go to datasketch's
MinHash as precomputed values (its affine32 scheme mixes them with a MurmurHash3
finalizer before permuting). Hashing every shingle's text with SHA-1 instead was
half of ingest time. :data:`HASH_SCHEME` names this scheme: signatures stored under
another one are recomputed, never compared (see ``Ingestor._load_index``).
"""

from __future__ import annotations

import functools
import operator
import re

import numpy as np
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH

# Changes whenever a signature of the same text would change: stored signatures
# carrying another scheme name are recomputed from their text.
HASH_SCHEME = "words-xxh3-poly64-top32/affine32"

_WORDS = re.compile(r"\w+")
# ASCII fast path: every byte that is not [A-Za-z0-9_] (the re module's \w for ASCII) becomes a
# space, so bytes.split() yields exactly the \w+ runs, already encoded for hashing.
_ASCII_NONWORD_TO_SPACE = bytes(b if b < 128 and (chr(b).isalnum() or b == ord("_")) else ord(" ") for b in range(256))
_BYTEORDER = "<"  # stored signatures read the same on any machine
# Odd, so each step of the polynomial is a bijection mod 2**64; with random word
# hashes, two different shingles differ by a uniform value (top bits included).
_MULT = np.uint64(0x9E3779B97F4A7C15)
_TOP = np.uint64(32)


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """32-bit hashes of the word n-grams of ``text`` (lower-cased ``\\w+`` words), one per position.

    A text of at most n words is one shingle of all its words (an empty text, one
    shingle of none). Repeated shingles repeat their hash; MinHash ignores repeats.
    """
    words = _words(text)
    word_hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, words), dtype=np.uint64, count=len(words))
    k = min(n, len(words))
    positions = max(len(words) - n + 1, 1)
    # Seeded with the shingle length, so a short text's single shingle differs from any n-gram.
    h = np.full(positions, k, dtype=np.uint64)
    for i in range(k):
        h = h * _MULT + word_hashes[i : i + positions]
    return (h >> _TOP).astype(np.uint32)


def _words(text: str) -> list[bytes]:
    """The lower-cased ``\\w+`` words of ``text``, UTF-8 encoded."""
    if text.isascii():
        # Several times cheaper than the regex, and most corpus text is ASCII.
        return text.lower().encode("ascii").translate(_ASCII_NONWORD_TO_SPACE).split()
    return [w.encode("utf-8") for w in _WORDS.findall(text.lower())]


@functools.cache
def _empty(num_perm: int) -> MinHash:
    # Drawing the permutations took a quarter of ingest time when done per document;
    # copies share them (same seed, so signatures are unchanged). The values fed to
    # update_batch are already hashes: the hash function is the identity on ints.
    return MinHash(num_perm=num_perm, hashfunc=operator.index, scheme="affine32")


def signature(text: str, *, num_perm: int, shingle_words: int) -> LeanMinHash:
    mh = _empty(num_perm).copy()
    mh.update_batch(shingle_hashes(text, shingle_words).tolist())
    return LeanMinHash(mh)


def to_bytes(sig: LeanMinHash) -> bytes:
    buf = bytearray(sig.bytesize(byteorder=_BYTEORDER))
    sig.serialize(buf, byteorder=_BYTEORDER)
    return bytes(buf)


def from_bytes(data: bytes) -> LeanMinHash:
    return LeanMinHash.deserialize(data, byteorder=_BYTEORDER)


class NearDupIndex:
    """Signatures of accepted documents, keyed by document id."""

    def __init__(self, *, threshold: float, num_perm: int):
        self.threshold = threshold
        self.num_perm = num_perm
        # Weigh misses far above false candidates: every candidate is re-checked by its
        # estimated Jaccard, while a miss lets a near duplicate in. With equal weights
        # LSH finds only about half of the pairs right at the threshold.
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
        self._sigs: dict[int, LeanMinHash] = {}

    def __len__(self) -> int:
        return len(self._sigs)

    def __contains__(self, key: int) -> bool:
        return key in self._sigs

    def add(self, key: int, sig: LeanMinHash) -> None:
        self._lsh.insert(key, sig)
        self._sigs[key] = sig

    def remove(self, key: int) -> LeanMinHash | None:
        sig = self._sigs.pop(key, None)
        if sig is not None:
            self._lsh.remove(key)
        return sig

    def best_match(self, sig: LeanMinHash) -> tuple[int, float] | None:
        """The most similar indexed document at or above the threshold, with its estimated Jaccard."""
        best: tuple[int, float] | None = None
        for key in self._lsh.query(sig):
            j = sig.jaccard(self._sigs[key])
            if j >= self.threshold and (best is None or j > best[1] or (j == best[1] and key < best[0])):
                best = (key, j)
        return best
