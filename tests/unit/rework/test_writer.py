import json
import os

import pytest

from selfloop.rework.diversity import admit, distinct_n, measure
from selfloop.rework.writer import rework_file, write_records


def _record(i, **extra):
    return {
        "id": f"c{i}",
        "text": f"record number {i}",
        "strategy": "rewrite",
        "generation": 3,
        "sources": [i],
        "verdicts": [{"judge": "a_vs_b", "status": "accept", "score": 0.1}],
        "created_at": 1.0,
        **extra,
    }


def test_rework_file_is_whole_jsonl_loadable_by_datasets(tmp_path):
    import datasets

    path = rework_file(tmp_path, 3, "rewrite", 7)
    assert path == tmp_path / "gen-0003" / "rewrite-c00007.jsonl"
    assert write_records(path, [_record(i) for i in range(5)])
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 5
    assert set(ds.column_names) >= {"id", "text", "strategy", "generation", "sources", "verdicts", "created_at"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_existing_file_is_never_rewritten(tmp_path):
    path = rework_file(tmp_path, 1, "synthesize", 1)
    assert write_records(path, [_record(1)])
    before = path.read_bytes()
    assert not write_records(path, [_record(2)])
    assert path.read_bytes() == before


def test_records_without_provenance_are_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    bad = _record(1)
    del bad["sources"]
    with pytest.raises(ValueError, match="provenance"):
        write_records(path, [bad])
    with pytest.raises(ValueError, match="exactly one"):
        write_records(path, [_record(1, messages=[{"role": "user", "content": "hi"}])])
    assert not path.exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    path = rework_file(tmp_path, 1, "rewrite", 2)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_records(path, [_record(1)])
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_distinct_n():
    assert distinct_n(["a b c d"], 2) == 1.0
    assert distinct_n(["a b a b a b"], 2) == pytest.approx(2 / 5)
    assert distinct_n([], 2) == 0.0


def test_diversity_floor_rejects_near_copies():
    copies = [f"the quick brown fox jumps over the lazy dog {'again' if i % 2 else ''}" for i in range(12)]
    div = measure(copies)
    assert div.max_similarity > 0.8
    ok, reason = admit(div, floor=0.2)
    assert not ok and reason.startswith("diversity_floor")
    varied = [
        "the quick brown fox jumps",
        "python dictionaries map keys to values",
        "rain fell on the quiet harbour town",
        "seven times eight is fifty six",
    ]
    ok, _ = admit(measure(varied), floor=0.2)
    assert ok
    assert json.dumps(measure(varied).as_dict())
