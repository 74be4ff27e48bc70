"""bench.ingest_speed's comparison with datatrove runs its reader, Gopher filter and MinHash on the files given."""

from __future__ import annotations

import pytest

from bench.ingest_speed import datatrove_steps
from bench.project import write_corpus


@pytest.mark.slow  # spaCy loads, datatrove's executor logs: seconds even for two files
def test_datatrove_steps_read_filter_and_sign_the_same_files(tmp_path):
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    size = write_corpus(tmp_path / "corpus", 2, 4000, seed=1)
    figures = datatrove_steps(tmp_path / "corpus", tmp_path)
    assert figures["mb"] == round(size / 1e6, 3) and figures["seconds"] > 0
    # Both documents passed the Gopher filter and were signed into every one of the 16 buckets.
    buckets = sorted((tmp_path / "datatrove-out" / "signatures").glob("bucket_*/*.minhash.sig"))
    assert len(buckets) == 16 and all(b.stat().st_size == 2 * (8 * 8 + 4) for b in buckets)
