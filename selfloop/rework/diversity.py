"""Collapse guard: how diverse is a batch of accepted rework?

Two figures per batch, recorded per generation: ``distinct_2`` (distinct / all word bigrams, Li et al. 2016; a
collapsing model drives it down) and the MinHash Jaccard of each record to its nearest neighbour in the batch
(``max_similarity`` / ``mean_similarity``). A batch whose distinct-2 is below the configured floor is not admitted.
Signatures and the LSH index are rensa's, through ``selfloop.corpus.dedup`` as for ingest's near-dedup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rensa import RMinHashLSH

from selfloop.corpus.dedup import lsh_bands, minhashes

_WORD = re.compile(r"\w+|[^\w\s]")
_NEIGHBOUR = 0.3  # the LSH threshold of a neighbour: less similar records need not be found


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        toks = words(text)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


@dataclass(frozen=True)
class Diversity:
    n: int
    distinct_1: float
    distinct_2: float
    mean_similarity: float
    max_similarity: float

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "distinct_1": round(self.distinct_1, 4),
            "distinct_2": round(self.distinct_2, 4),
            "mean_similarity": round(self.mean_similarity, 4),
            "max_similarity": round(self.max_similarity, 4),
        }


def measure(texts: Sequence[str], num_perm: int = 64) -> Diversity:
    """Diversity of a batch. Nearest neighbours (word 3-gram MinHash) come from an LSH index, not all pairs."""
    hashes = minhashes(texts, num_perm=num_perm, shingle_words=3)
    nearest = [0.0] * len(texts)
    if len(texts) > 1:
        lsh = RMinHashLSH(_NEIGHBOUR, num_perm, lsh_bands(_NEIGHBOUR, num_perm))
        for i, m in enumerate(hashes):
            for j in lsh.query(m):
                sim = m.jaccard(hashes[j])
                nearest[i] = max(nearest[i], sim)
                nearest[j] = max(nearest[j], sim)
            lsh.insert(i, m)
    return Diversity(
        n=len(texts),
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        mean_similarity=sum(nearest) / len(nearest) if nearest else 0.0,
        max_similarity=max(nearest, default=0.0),
    )


def admit(div: Diversity, floor: float) -> tuple[bool, str]:
    """Whether a batch passes the diversity floor, with the reason."""
    if div.n == 0:
        return True, "empty batch"
    if div.distinct_2 < floor:
        return False, f"diversity_floor: distinct-2 {div.distinct_2:.3f} < {floor}"
    return True, f"distinct-2 {div.distinct_2:.3f} >= {floor}"
