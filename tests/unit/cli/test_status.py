"""`selfloop status` on a store with several drop reasons: rows by reason code, per-file outcomes, plain JSON."""

from __future__ import annotations

import json

import pytest

from selfloop.config import IngestConfig, WatchConfig
from selfloop.ingest.ingestor import Ingestor
from selfloop.store import Store
from selfloop.testing import make_project, tiny_config

LONG = (
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings. "
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread."
)


def chat(question: str) -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": "There are one hundred and twenty minutes in two hours."},
            ]
        }
    )


@pytest.fixture
def ingested(tmp_path):
    """A project whose store holds every kind of outcome: accepted, dropped by several reasons, quarantined."""
    config, _, paths = make_project(tmp_path, tiny_config())
    o = paths.orig
    lines = [
        chat("How many minutes are in 2 hours?"),  # 1 accepted
        "{bad",  # 2 invalid_json
        '{"foo": 1}',  # 3 missing_field
        chat("How many minutes are in 2 hours?"),  # 4 exact_duplicate of line 1
        "not json at all",  # 5 invalid_json, another message
        chat("And how many seconds are in 2 hours?"),  # 6 accepted
    ]
    (o / "chat.jsonl").write_text("\n".join(lines) + "\n")
    (o / "a.txt").write_text(LONG)
    (o / "b.txt").write_text(LONG)  # exact_duplicate of a.txt
    (o / "short.txt").write_text("hi there")  # too_short
    (o / "blob.bin").write_bytes(b"\x00\x01\x02")  # quarantined
    with Store.open(paths.db) as store:
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
        # A cycle that failed: its detail is a JSON object in the store.
        with store.tx() as c:
            c.execute(
                "INSERT INTO cycles (started_at, phase, status, detail) VALUES (1, 'rework', 'failed', ?)",
                (json.dumps({"rework": {"accepted": 3}}),),
            )
    return tmp_path, config


def test_status_groups_drops_by_reason_code(ingested, cli):
    root, config = ingested
    r = cli("status", "--json", "-c", str(config), cwd=root)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    rows = {(d["origin"], d["status"], d["reason"]): d["n"] for d in status["documents"]}
    assert rows == {
        ("orig", "active", ""): 3,
        ("orig", "dropped", "invalid_json"): 2,
        ("orig", "dropped", "missing_field"): 1,
        ("orig", "dropped", "too_short"): 1,
        ("orig", "duplicate", "exact_duplicate"): 2,
    }
    assert len(status["documents"]) == len(rows)  # one row per code, not per reason text
    assert status["last_cycle"]["detail"] == {"rework": {"accepted": 3}}  # an object, not a JSON string
    r = cli("status", "-c", str(config), cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("exact_duplicate") == 1 and r.stdout.count("invalid_json") == 1


def test_status_files_lists_each_files_outcome(ingested, cli):
    root, config = ingested
    r = cli("status", "--files", "--json", "-c", str(config), cwd=root)
    assert r.returncode == 0, r.stderr
    files = {f["path"]: f for f in json.loads(r.stdout)}
    assert sorted(files) == ["orig/a.txt", "orig/b.txt", "orig/blob.bin", "orig/chat.jsonl", "orig/short.txt"]
    c = files["orig/chat.jsonl"]
    assert (c["status"], c["accepted"]) == ("ingested", 2)
    assert c["dropped"] == {"invalid_json": 2, "missing_field": 1, "exact_duplicate": 1}
    assert c["lines"] == {"invalid_json": [2, 5], "missing_field": [3], "exact_duplicate": [4]}
    assert (files["orig/a.txt"]["accepted"], files["orig/a.txt"]["dropped"]) == (1, {})
    assert (files["orig/b.txt"]["accepted"], files["orig/b.txt"]["dropped"]) == (0, {"exact_duplicate": 1})
    assert files["orig/b.txt"]["lines"] == {}  # a text chunk is not a line
    assert files["orig/short.txt"]["dropped"] == {"too_short": 1}
    blob = files["orig/blob.bin"]
    assert blob["status"] == "quarantined" and blob["reason"].startswith("binary")
    r = cli("status", "--files", "-c", str(config), cwd=root, env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert "invalid_json 2 (lines 2, 5)" in r.stdout
    assert "quarantined" in r.stdout and "orig/blob.bin" in r.stdout


def test_status_reports_the_doc_rules_that_would_gut_orig(tmp_path, cli):
    config, _, paths = make_project(tmp_path, tiny_config())
    answers = [f"{a} + {b} = {a + b}. Adding {b} to {a} gives {a + b}." for a in range(10, 14) for b in range(5)]
    records = [
        {"messages": [{"role": "user", "content": "Add them."}, {"role": "assistant", "content": a}]} for a in answers
    ]
    (paths.orig / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (paths.orig / "story.txt").write_text(LONG + "\n")
    with Store.open(paths.db) as store:
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
    r = cli("status", "--json", "-c", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rules = json.loads(r.stdout)["doc_rules"]
    off = {(o["kind"], o["rule"]): o["orig_drop"] for o in rules["off"]}
    assert off[("chat", "gopher_alpha_words")] == 1.0  # "10 + 2 = 12." has few words with letters
    assert not any(kind == "text" for kind, _ in off)  # prose passes every rule
    assert rules["documents"]["chat"] >= 10 and rules["max_orig_drop"] == 0.05
    r = cli("status", "-c", str(config), cwd=tmp_path, env={"COLUMNS": "160"})
    assert r.returncode == 0, r.stderr
    assert "doc rules left off for rework" in r.stdout and "gopher_alpha_words" in r.stdout
