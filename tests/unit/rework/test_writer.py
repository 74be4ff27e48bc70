import json
import os

import pytest

from selfloop.rework.diversity import admit, distinct_n, measure
from selfloop.rework.writer import SCHEMAS, rework_file, write_records


def _record(i, **extra):
    return {
        "id": f"c{i}",
        "text": f"record number {i}",
        "kind": "text",
        "label_source": "self",
        "strategy": "rewrite",
        "generation": 3,
        "cycle": 7,
        "sources": [i],
        "verdicts": [{"judge": "a_vs_b", "status": "accept", "score": 0.1, "reason": None}],
        "created_at": 1.0,
        **extra,
    }


def test_rework_file_is_whole_jsonl_of_its_kind(tmp_path):
    path = rework_file(tmp_path, "text", 3, "rewrite", 7)
    assert path == tmp_path / "text" / "gen-0003" / "rewrite-c00007.jsonl"
    assert write_records(path, [_record(i) for i in range(5)], kind="text")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 5 and all(set(r) == set(SCHEMAS["text"]) for r in rows)
    assert json.loads(rows[0]["verdicts"])[0]["judge"] == "a_vs_b" and json.loads(rows[0]["sources"]) == [0]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(ValueError, match="unknown rework kind"):
        rework_file(tmp_path, "images", 3, "rewrite", 7)


def test_existing_file_is_never_rewritten(tmp_path):
    path = rework_file(tmp_path, "text", 1, "synthesize", 1)
    assert write_records(path, [_record(1)], kind="text")
    before = path.read_bytes()
    assert not write_records(path, [_record(2)], kind="text")
    assert path.read_bytes() == before


def test_records_that_do_not_fit_their_kind_are_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    bad = _record(1)
    del bad["sources"]
    with pytest.raises(ValueError, match="lacks"):
        write_records(path, [bad], kind="text")
    with pytest.raises(ValueError, match="messages must be a non-empty list"):
        write_records(path, [_record(1, messages=[{"role": "user"}])], kind="chat")
    with pytest.raises(ValueError, match="generation must be int"):
        write_records(path, [_record(1, generation="3")], kind="text")
    assert not path.exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    path = rework_file(tmp_path, "text", 1, "rewrite", 2)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_records(path, [_record(1)], kind="text")
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


def _task(i, mode, **extra):
    task = {"id": f"{i}+{i}", "family": "addition", "difficulty": 1, "prompt": f"{i} + {i}"}
    answer = {"answer": str(2 * i)} if mode == "answer" else {"solution": f"print({2 * i})"}
    return {
        **task,
        "checker": f"def check(answer):\n    return answer.strip() == '{2 * i}'\n",
        **answer,
        "variants": None,
        "candidate": f"c00002-{i}",
        "answer_kind": mode,
        "rationalized": False,
        "completion": answer.get("answer") or answer["solution"],
        **{k: v for k, v in _record(i).items() if k not in ("id", "text")},
        "kind": "task",
        "label_source": "oracle",
        "strategy": "solve",
        "sources": [],
        "verdicts": [{"judge": "task", "status": "accept", "score": None, "reason": None}],
        **extra,
    }


def _chat(i, **extra):
    messages = [
        {"role": "user", "content": f"What is the number {i}, in words and digits together?"},
        {"role": "assistant", "content": f"It is number {i}, written as the digits {i} in every harbour ledger."},
    ]
    return {**{k: v for k, v in _record(i).items() if k != "text"}, "kind": "chat", "messages": messages, **extra}


def _rework_of_every_kind(root):
    """Two files of each kind whose rows differ the ways real cycles do (scores or none, sources or none, ...)."""
    prose = (
        "The harbour was quiet in the early morning and the boats rocked at their moorings while gulls circled "
        "over the market square, number {i}, and the baker set out fresh bread for the fishermen."
    )
    variant = [{"substitute": {"3": "4"}, "answer": "8"}]
    files = {
        "text": [
            [_record(i, text=prose.format(i=i)) for i in range(3)],
            [
                _record(i, text=prose.format(i=i), sources=[], verdicts=[{"judge": "text_quality", "status": "accept"}])
                for i in range(3, 5)
            ],
        ],
        "chat": [[_chat(i) for i in range(5, 7)], [_chat(i, sources=[]) for i in range(7, 9)]],
        "tasks": [
            [_task(i, "answer") for i in range(1, 3)],
            [_task(3, "program", variants=variant, checker=None, tests="assert True"), _task(4, "program")],
        ],
        "pairs": [
            [{"prompt": "2 + 2", "chosen": "4", "rejected": "5", "source": "task", "generation": 3, "cycle": 2}],
            [{"prompt": "A tide", "chosen": " rises.", "rejected": " x", "source": "a_vs_b", "generation": 4}],
        ],
    }
    paths = {}
    for kind, batches in files.items():
        paths[kind] = []
        for n, rows in enumerate(batches):
            rows = [{"cycle": 2, "created_at": 1.5, **r} for r in rows]
            path = rework_file(root, kind, 3 + n, "solve" if kind == "tasks" else "rewrite", 2 + n)
            assert write_records(path, rows, kind=kind)
            paths[kind].append(path)
    return paths


def test_every_kind_loads_with_datasets_whatever_the_file_order(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    files = _rework_of_every_kind(tmp_path / "rework")
    for kind, paths in files.items():
        for order in (paths, paths[::-1]):
            ds = datasets.load_dataset(
                "json", data_files=[str(p) for p in order], split="train", cache_dir=str(tmp_path / "hf")
            )
            assert set(ds.column_names) == set(SCHEMAS[kind]), kind
            assert ds.num_rows == sum(len(p.read_text().splitlines()) for p in paths)
        glob = str(tmp_path / "rework" / kind / "**" / "*.jsonl")  # the README's recipe
        assert datasets.load_dataset("json", data_files=glob, split="train", cache_dir=str(tmp_path / "hf")).num_rows
    chat = datasets.load_dataset("json", data_files=[str(p) for p in files["chat"]], split="train")
    pairs = datasets.load_dataset("json", data_files=[str(p) for p in files["pairs"]], split="train")
    trl_data = pytest.importorskip("trl.data_utils")
    # The formats of the README's recipes: conversational for SFTTrainer, standard preference for DPOTrainer.
    assert trl_data.is_conversational(chat.select_columns(["messages"])[0])
    pair = pairs.select_columns(["prompt", "chosen", "rejected"])[0]
    assert not trl_data.is_conversational(pair) and all(isinstance(v, str) for v in pair.values())


def test_rework_of_every_kind_is_ingested_back(project):
    from selfloop.config import IngestConfig, WatchConfig
    from selfloop.ingest.ingestor import Ingestor
    from selfloop.records import TaskRecord
    from selfloop.store import Store

    files = _rework_of_every_kind(project.rework)
    with Store.open(project.db) as store:
        report = Ingestor(IngestConfig(), WatchConfig(), project, store).scan()
        assert not report.quarantined and not report.dropped
        kinds = store.query("SELECT kind, COUNT(*) AS n FROM documents WHERE status = 'active' GROUP BY kind")
        assert {r["kind"]: r["n"] for r in kinds} == {"text": 5, "chat": 4, "task": 4}  # pairs: DPO's, not documents
        tasks = [
            TaskRecord.model_validate_json(r[0])
            for r in store.query("SELECT content FROM documents WHERE kind = 'task'")
        ]
        by_id = {t.id: t for t in tasks}
        assert by_id["1+1"].answer == "2" and by_id["1+1"].solution is None
        assert by_id["3+3"].checker is None and by_id["3+3"].tests == "assert True"
        assert by_id["3+3"].variants[0].answer == "8" and by_id["1+1"].variants is None
        assert by_id["4+4"].solution == "print(8)" and by_id["4+4"].answer is None
        assert str(files["pairs"][0].relative_to(project.rework)).startswith("pairs/")
