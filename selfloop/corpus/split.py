"""The held-out split: a pure function of a document's key, so it never moves.

A document's key is its content hash (tasks: family/difficulty/id). The ingestor
additionally reuses the split already recorded for the same hash, so even a
changed ``heldout_fraction`` does not move documents seen before.
"""

from __future__ import annotations

import hashlib


def split_of(key: str, heldout_fraction: float) -> str:
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if h / 2**32 < heldout_fraction else "train"
