"""LoRA challengers: only the adapters train, and the generation is saved merged (plain Auto classes load it)."""

from __future__ import annotations

import json

import pytest
import torch
from lifecycle_helpers import fill_corpus, make_project

from selfloop.loop.cycle import PHASES, run_cycle
from selfloop.model.factory import load_pretrained
from selfloop.model.registry import Registry
from selfloop.store import Store

pytest.importorskip("peft")
pytestmark = pytest.mark.slow
NO_INGEST = [p for p in PHASES if p[0] != "ingest"]


def test_a_lora_challenger_changes_only_adapted_weights_and_loads_merged(tmp_path):
    config_path, cfg, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        fill_corpus(store)
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)  # generation 0, full weights
        text = config_path.read_text().replace("[model]\n", "[model]\nlora = true\nlora_r = 4\n", 1)
        config_path.write_text(text)
        from selfloop.config import load_config

        cfg, _ = load_config(config_path)
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
    reg = Registry(paths.models)
    assert sorted(reg.on_disk()) == [0, 1]
    files = {p.name for p in reg.path(1).iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files  # merged, not an adapter
    parent, _ = load_pretrained(reg.path(0))
    child, _ = load_pretrained(reg.path(1))
    before, after = dict(parent.named_parameters()), dict(child.named_parameters())
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # GPT-2's LoRA targets are the attention projections (c_attn); everything else is frozen.
    assert changed and all("c_attn" in name for name in changed), changed
    assert torch.equal(before["transformer.wte.weight"], after["transformer.wte.weight"])
    manifest = json.loads((reg.path(1) / "manifest.json").read_text())
    assert manifest["recipe"]["steps"] == cfg.train.max_steps
