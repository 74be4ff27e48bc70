"""`selfloop models`: plain JSON, and a table that stays readable at 80 columns."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from selfloop.dashboard import history_table
from selfloop.testing import make_project, tiny_config

DECISION = "promote: held-out loss 4.87 < 4.91 by 0.8% (>= min_improvement 0.5%)"


@pytest.fixture
def models(tmp_path):
    """Three generations on disk (their manifests: `selfloop models` reads nothing else), the first current."""
    config, _, paths = make_project(tmp_path, tiny_config())
    for n in range(3):
        gen = paths.models / f"gen-{n:04d}"
        gen.mkdir(parents=True)
        manifest = {
            "generation": n,
            "parent": n - 1 if n else None,
            "status": "rejected" if n == 1 else "promoted",
            "metrics": {"loss": 4.87123 + n, "text_loss": 4.9, "chat_loss": 3.2, "tasks": {"add": 0.5, "sort": 1.0}},
            "train": {"global_step": 1200},
            "gate": {"reason": DECISION},
            "created_at": time.time(),
            "rolled_back_at": time.time() if n == 2 else None,
        }
        (gen / "manifest.json").write_text(json.dumps(manifest))
    (paths.models / "current").write_text("gen-0000\n")
    return config


def test_models_json(models, cli):
    r = cli("models", "--json", "-c", str(models))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["current"] == 0 and [g["generation"] for g in out["generations"]] == [0, 1, 2]
    assert out["generations"][0]["metrics"]["tasks"] == {"add": 0.5, "sort": 1.0}
    assert out["generations"][1]["gate"] == {"reason": DECISION} and out["recipes"] == []


def test_models_table_is_readable_at_80_columns(models, cli):
    r = cli("models", "-c", str(models), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in r.stdout  # no cell cut short
    for whole in ("4.8712", "5.8712", "add=0.50", "sort=1.00", "min_improvement", "promoted", "rejected", "1200"):
        assert whole in r.stdout, whole
    wide = cli("models", "-c", str(models), env={"COLUMNS": "200"})
    assert "chat loss" in wide.stdout and "chat loss" not in r.stdout  # a column dropped, not every cell cut


def test_recipe_history_is_readable_at_80_columns():
    rows = [
        {
            "cycle_id": 12,
            "generation": 7,
            "idx": k,
            "params": {"learning_rate": 3e-4, "max_steps": 400, "rework_max_share": 0.25},
            "figures": {"loss": 4.123456, "tasks": {"add": 0.5, "mul": 0.25}},
            "chosen": k == 1,
            "promoted": k == 1,
            "decision": DECISION,
        }
        for k in range(3)
    ]
    console = Console(width=80, record=True)
    console.print(history_table(rows, width=80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for whole in ("3.00e-04", "4.1235", "add=0.50", "mul=0.25", "(incumbent)", "promoted", "held-out"):
        assert whole in text, whole


def test_models_shows_each_judges_accept_rate_and_reasons(models, cli):
    from selfloop.config import load_config
    from selfloop.judge.base import accept, reject
    from selfloop.rework.strategies import Draft
    from selfloop.store import Store, candidates

    _, paths = load_config(models, env=False)
    verdicts = [
        [accept("text_quality", "ok"), reject("a_vs_b", "lost_a_vs_b: fluency, B 0.1 vs A 0.9", score=-0.8)],
        [accept("text_quality", "ok"), reject("a_vs_b", "lost_a_vs_b: quality, B fails c4_sentences")],
        [reject("text_quality", "too_short: 5 chars < min_chars 32")],
        [accept("text_quality", "ok"), accept("a_vs_b", "B beats A", score=0.4), accept("doc_quality", "passes")],
    ]
    with Store.open(paths.db) as store:
        with store.tx() as c:
            c.execute("INSERT INTO cycles (started_at, phase, status, detail) VALUES (1, 'judge', 'running', '{}')")
        drafts = [Draft("rewrite", "text", [1], f"text {i}", "p", f"c{i}", "orig") for i in range(len(verdicts))]
        candidates.insert_candidates(store, 1, 0, drafts)
        for row, vs in zip(candidates.pending(store, 1), verdicts, strict=True):
            ok = all(v.accepted for v in vs)
            candidates.record_outcome(store, 1, row["id"], vs, accepted=ok, reason="accepted" if ok else "rejected")
    r = cli("models", "--json", "-c", str(models))
    assert r.returncode == 0, r.stderr
    judges = {j["judge"]: j for j in json.loads(r.stdout)["judges"]}
    assert judges["a_vs_b"] == {
        "judge": "a_vs_b",
        "verdicts": 3,
        "accepted": 1,
        "accept_rate": 0.3333,
        "rejected_by": {"lost_a_vs_b": 2},
    }
    assert judges["text_quality"]["rejected_by"] == {"too_short": 1} and judges["doc_quality"]["accept_rate"] == 1.0
    r = cli("models", "-c", str(models), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert "judges on rework candidates" in r.stdout and "lost_a_vs_b 2" in r.stdout and "1 (33%)" in r.stdout
