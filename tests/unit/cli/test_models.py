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
