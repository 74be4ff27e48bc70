"""Near-duplicate detection: MinHash signatures over word shingles, indexed with LSH (datasketch).

The index lives in memory and is incremental: built once from the signatures
stored with active documents (``documents.minhash``), then updated as documents
are accepted or removed. LSH proposes candidates; the estimated Jaccard of each
candidate is checked against the threshold so a collision alone never marks a
duplicate. Exact duplicates are found by content hash in the store, not here.
"""

from __future__ import annotations

import functools
import re

from datasketch import LeanMinHash, MinHash, MinHashLSH

_WORDS = re.compile(r"\w+")
_BYTEORDER = "<"  # stored signatures read the same on any machine


def shingles(text: str, n: int) -> set[bytes]:
    words = _WORDS.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(gram).encode("utf-8") for gram in zip(*(words[i:] for i in range(n)))}


@functools.cache
def _empty(num_perm: int) -> MinHash:
    # Drawing the permutations took a quarter of ingest time when done per document;
    # copies share them (same seed, so signatures are unchanged).
    return MinHash(num_perm=num_perm)


def signature(text: str, *, num_perm: int, shingle_words: int) -> LeanMinHash:
    mh = _empty(num_perm).copy()
    mh.update_batch(list(shingles(text, shingle_words)))
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
