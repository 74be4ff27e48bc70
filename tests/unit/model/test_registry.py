"""The checkpoint registry: atomic generations, the current pointer, rollback, pruning, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from lifecycle_helpers import make_project, paragraph
from transformers import AutoModelForCausalLM

from selfloop.config import ModelConfig
from selfloop.errors import SelfloopError
from selfloop.model import registry as registry_mod
from selfloop.model.factory import build_scratch_model
from selfloop.model.registry import Registry
from selfloop.model.tokenizer import train_tokenizer
from selfloop.store import Store


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = train_tokenizer([paragraph(i) for i in range(10)], 300, max_length=64)
    torch.manual_seed(0)
    model = build_scratch_model(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, n_positions=64), tok)
    path = tmp_path_factory.mktemp("final")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def add_promoted(reg: Registry, n: int, model_dir, parent=None):
    reg.add(n, model_dir, {"parent": parent, "metrics": {"loss": 3.0 - n / 10}}, {"model": {"n_layer": 1}})
    reg.promote(n, {"promote": True, "reason": "test"})


def test_add_promote_and_mirror(tmp_path, model_dir):
    with Store.open(tmp_path / "state.db") as store:
        reg = Registry(tmp_path / "models", store)
        assert reg.current() is None
        path = reg.add(0, model_dir, {"parent": None, "recipe": {"steps": 3}}, {"model": {"n_layer": 1}})
        assert reg.manifest(0)["status"] == "candidate" and reg.current() is None
        assert json.loads((path / "selfloop_config.json").read_text()) == {"model": {"n_layer": 1}}
        reg.promote(0, {"promote": True, "reason": "generation 0"})
        assert reg.current() == 0 and (tmp_path / "models" / "current").read_text() == "gen-0000\n"
        row = store.query("SELECT * FROM generations WHERE id = 0")[0]
        assert row["status"] == "promoted" and json.loads(row["gate"])["reason"] == "generation 0"
        assert json.loads(row["recipe"]) == {"steps": 3}
        assert AutoModelForCausalLM.from_pretrained(path, local_files_only=True).config.n_layer == 1
        with pytest.raises(SelfloopError, match="already exists"):
            reg.add(0, model_dir, {}, {})
        reg.add(1, model_dir, {"parent": 0}, {})
        reg.reject(1, {"promote": False, "reason": "worse"})
        assert reg.current() == 0 and reg.manifest(1)["status"] == "rejected"
        assert store.scalar("SELECT status FROM generations WHERE id = 1") == "rejected"


def test_a_failed_save_leaves_current_on_a_whole_generation(tmp_path, model_dir, monkeypatch):
    reg = Registry(tmp_path / "models")
    add_promoted(reg, 0, model_dir)
    calls = []

    def failing_fsync(path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(registry_mod, "_fsync_path", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        reg.add(1, model_dir, {"parent": 0}, {})
    monkeypatch.undo()
    assert reg.on_disk() == [0] and reg.current() == 0
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".tmp-")]
    AutoModelForCausalLM.from_pretrained(reg.current_path(), local_files_only=True)


def test_kill_9_during_save_leaves_current_on_a_whole_generation(tmp_path, model_dir):
    reg = Registry(tmp_path / "models")
    add_promoted(reg, 0, model_dir)
    # A child that installs generation 1 and promotes it, slowed down per file so we can kill it mid-copy.
    script = f"""
import time, shutil
from selfloop.model import registry as r
def slow(src, dst):
    shutil.copy2(src, dst); print("copied", flush=True); time.sleep(0.5)
r._link_or_copy = slow
reg = r.Registry({str(tmp_path / "models")!r})
reg.add(1, {str(model_dir)!r}, {{"parent": 0}}, {{}})
reg.promote(1, {{"promote": True, "reason": "x"}})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "copied"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert reg.on_disk() == [0] and reg.current() == 0
    AutoModelForCausalLM.from_pretrained(reg.current_path(), local_files_only=True)
    reg.clean_temp()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["current", "gen-0000"]


def test_rollback_defaults_to_the_previous_promoted(tmp_path, model_dir):
    with Store.open(tmp_path / "state.db") as store:
        reg = Registry(tmp_path / "models", store)
        add_promoted(reg, 0, model_dir)
        add_promoted(reg, 1, model_dir, parent=0)
        reg.add(2, model_dir, {"parent": 1}, {})
        reg.reject(2, {"promote": False, "reason": "worse"})
        add_promoted(reg, 3, model_dir, parent=1)
        assert reg.rollback() == 1 and reg.current() == 1  # 2 was never promoted
        assert reg.rollback() == 0  # 3 was rolled back from, so it is not "previous"
        with pytest.raises(SelfloopError, match="no earlier promoted"):
            reg.rollback()
        with pytest.raises(SelfloopError, match="never promoted"):
            reg.rollback(2)
        assert reg.rollback(3) == 3 and reg.predecessor(3) == 0  # 1 stays abandoned
        assert store.scalar("SELECT COUNT(*) FROM events WHERE kind = 'rollback'") == 3


def test_prune_spares_champion_predecessor_parent_and_generation_zero(tmp_path, model_dir):
    with Store.open(tmp_path / "state.db") as store:
        reg = Registry(tmp_path / "models", store)
        add_promoted(reg, 0, model_dir)
        add_promoted(reg, 1, model_dir, parent=0)
        add_promoted(reg, 2, model_dir, parent=1)
        for n in range(3, 7):
            reg.add(n, model_dir, {"parent": 2}, {})
            reg.reject(n, {"promote": False, "reason": "worse"})
        assert reg.prune(keep_generations=2) == [3, 4]
        assert reg.on_disk() == [0, 1, 2, 5, 6]  # champion 2, predecessor and parent 1, gen 0, newest two
        assert store.scalar("SELECT COUNT(*) FROM generations WHERE status = 'pruned'") == 2


def test_models_and_rollback_commands(tmp_path, model_dir, cli):
    config_path, _, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        reg = Registry(paths.models, store)
        add_promoted(reg, 0, model_dir)
        add_promoted(reg, 1, model_dir, parent=0)
    out = cli("models", "-c", str(config_path), env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "* 1" in out.stdout and "2.9000" in out.stdout and "promoted" in out.stdout
    out = cli("rollback", "-c", str(config_path))
    assert out.returncode == 0 and "generation 1 -> 0" in out.stdout
    assert Registry(paths.models).current() == 0
    out = cli("rollback", "-c", str(config_path), "--to", "7")
    assert out.returncode == 1 and "generation 7 is not on disk" in out.stderr


def test_a_generation_keeps_the_runs_metrics_and_logs(tmp_path, model_dir):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "events.out.tfevents.1").write_bytes(b"tb")
    rows = [{"generation": 0, "step": 2, "loss": 5.5}, {"generation": 0, "step": 4, "loss": 4.25}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "metrics.csv").write_text("generation,step,loss\n0,2,5.5\n0,4,4.25\n")
    reg = Registry(tmp_path / "models")
    extras = [run / "metrics.jsonl", run / "metrics.csv", run / "train.log", run / "logs"]  # no train.log: skipped
    path = reg.add(0, model_dir, {"parent": None}, {"train": {}}, extras=extras)
    assert reg.metrics(0) == rows
    assert (path / "metrics.csv").read_text() == (run / "metrics.csv").read_text()
    assert (path / "logs" / "events.out.tfevents.1").read_bytes() == b"tb"
    assert not (path / "train.log").exists()
    reg.add(1, model_dir, {"parent": 0}, {})
    assert reg.metrics(1) == []
