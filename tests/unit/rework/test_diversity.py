"""The collapse guard's similarity figures come from the same MinHash library as ingest's near-dedup."""

import subprocess
import sys

import pytest

from selfloop.corpus.dedup import signature
from selfloop.rework.diversity import measure


def test_diversity_uses_the_ingest_minhash_library_only():
    a = "the harbour was quiet in the early morning and the boats rocked at their moorings"
    b = a.replace("quiet", "calm")
    sim = signature(a, num_perm=64, shingle_words=3).jaccard(signature(b, num_perm=64, shingle_words=3))
    assert measure([a, b]).max_similarity == pytest.approx(sim) and 0.3 < sim < 1
    code = (
        "import sys, selfloop.rework.diversity, selfloop.ingest.ingestor; "
        "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
