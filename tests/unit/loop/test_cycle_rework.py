"""A whole cycle with rework: the champion writes candidates, the eval space judges them,
accepted ones join the mixture, and a crash mid-cycle duplicates nothing."""

from __future__ import annotations

import json

import pytest
from lifecycle_helpers import chat_record, make_project, paragraph

from selfloop.loop import phases as phases_mod
from selfloop.loop.cycle import PHASES, run_cycle
from selfloop.model.registry import Registry
from selfloop.store import Store

pytestmark = pytest.mark.slow

REWORK = {
    "rework": {
        "enabled": True,
        "candidates_per_cycle": 16,
        "samples_per_prompt": 2,
        "max_new_tokens": 16,
        "temperature": 0.9,
    },
    "judge": {"diversity_floor": 0.05},
    "sandbox": {"pool_size": 1},
}


def write_corpus(orig):
    (orig / "prose.txt").write_text("\n\n".join(paragraph(i, n=8) for i in range(40)) + "\n")
    (orig / "chat.jsonl").write_text("".join(json.dumps(chat_record(i)) + "\n" for i in range(30)))


def test_cycle_once_with_rework_end_to_end(tmp_path, cli):
    config_path, _, paths = make_project(tmp_path / "proj", REWORK)
    write_corpus(paths.orig)
    orig_before = {p: p.read_bytes() for p in paths.orig.rglob("*") if p.is_file()}
    first = cli("cycle", "--once", "-c", str(config_path), timeout=300)
    assert first.returncode == 0, first.stderr
    second = cli("cycle", "--once", "-c", str(config_path), timeout=300)
    assert second.returncode == 0, second.stderr
    assert "rework: 16 candidates" in second.stdout and "judge:" in second.stdout
    with Store.open(paths.db, readonly=True) as store:
        detail = json.loads(store.scalar("SELECT detail FROM cycles WHERE id = 2"))
        assert list(detail["phases"]) == ["ingest", "rework", "judge", "train", "evaluate", "gate", "promote"]
        judged = detail["phases"]["judge"]["out"]
        assert store.scalar("SELECT COUNT(*) FROM candidates WHERE cycle_id = 2 AND status = 'pending'") == 0
        accepted = store.scalar("SELECT COUNT(*) FROM candidates WHERE cycle_id = 2 AND status = 'accepted'")
        assert accepted == judged["accepted"]
        rework_docs = store.scalar("SELECT COUNT(*) FROM documents WHERE origin = 'rework' AND status = 'active'")
        # Everything accepted was ingested as rework and trained on (capped share, orig all there).
        data = detail["phases"]["train"]["out"]["data"]
        assert data["rework_share"] <= 0.5
        if accepted:
            assert rework_docs >= 1 and data["rework_share"] > 0
    written = [f for kind in ("text", "chat", "tasks") for f in (paths.rework / kind).rglob("*.jsonl")]
    records = [json.loads(line) for f in written for line in f.read_text().splitlines()]
    assert len(records) == accepted
    assert all(r["generation"] == 0 and r["cycle"] == 2 for r in records)
    assert {p: p.read_bytes() for p in paths.orig.rglob("*") if p.is_file()} == orig_before  # orig untouched
    assert Registry(paths.models).manifest(1)["gate"]["reason"]


def test_a_crash_during_judging_resumes_without_duplicates(tmp_path, monkeypatch):
    config_path, cfg, paths = make_project(tmp_path, REWORK)
    write_corpus(paths.orig)
    with Store.open(paths.db) as store:
        run_cycle(cfg, paths, store, config_path=config_path)  # generation 0
        real_judge = phases_mod.phase_judge
        calls = {"n": 0}

        def crashing_judge(ctx):
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt  # the process dies in the middle of the judge phase
            return real_judge(ctx)

        phases = [(n, crashing_judge if n == "judge" else f) for n, f in PHASES]
        with pytest.raises(KeyboardInterrupt):
            run_cycle(cfg, paths, store, config_path=config_path, phases=phases)
        assert store.query("SELECT status, phase FROM cycles WHERE id = 2")[0][:] == ("interrupted", "judge")
        made = store.scalar("SELECT COUNT(*) FROM candidates")
        assert made == 16
        detail = run_cycle(cfg, paths, store, config_path=config_path, phases=phases)
        assert store.scalar("SELECT COUNT(*) FROM candidates") == made  # the rework phase did not run again
        assert detail["phases"]["rework"]["out"]["candidates"] == 16
        ids = [json.loads(line)["id"] for f in paths.rework.rglob("*.jsonl") for line in f.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == detail["phases"]["judge"]["out"]["accepted"]
