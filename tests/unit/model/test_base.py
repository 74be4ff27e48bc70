"""model.base: a local dir, a cached hub id (never downloaded), a GGUF converted once with the same logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_models import SMOLLM_TEMPLATE, tiny_llama_dir, write_tiny_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfloop.errors import SelfloopError
from selfloop.model.base import base_kind, cached_hub_dir, describe_base, resolve_base
from selfloop.model.factory import load_pretrained

pytest.importorskip("gguf")


def test_the_forms_of_model_base(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert base_kind("scratch", tmp_path) == "scratch"
    assert base_kind("weights/SmolLM2.Q4_1.GGUF", tmp_path) == "gguf"
    assert base_kind("models/mine", tmp_path) == "dir"  # a local folder wins over a hub id of that shape
    assert base_kind("./mine", tmp_path) == "dir"
    assert base_kind("/abs/path/model", tmp_path) == "dir"
    assert base_kind("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == "hub"
    assert base_kind("gpt2", tmp_path) == "hub"


def test_a_missing_base_is_a_clear_error_naming_the_forms(tmp_path):
    with pytest.raises(SelfloopError, match="no directory .*models/nowhere and not in the local Hugging Face cache"):
        resolve_base("models/nowhere", tmp_path, tmp_path / ".selfloop")
    with pytest.raises(SelfloopError, match="does not exist; use"):
        resolve_base("./models/nowhere", tmp_path, tmp_path / ".selfloop")
    with pytest.raises(SelfloopError, match="GGUF file .* does not exist"):
        describe_base("nowhere.gguf", tmp_path)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(SelfloopError, match="not a readable GGUF model"):
        describe_base("junk.gguf", tmp_path)


def test_a_hub_id_resolves_only_from_the_local_cache(tmp_path):
    cache = tmp_path / "hub"
    with pytest.raises(SelfloopError, match="not in the local Hugging Face cache, and selfloop never downloads"):
        cached_hub_dir("someone/tiny-llama", cache_dir=cache)
    # The cache's own layout: refs/main names the snapshot folder that holds the files.
    repo = cache / "models--someone--tiny-llama"
    tiny_llama_dir(repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    path = cached_hub_dir("someone/tiny-llama", cache_dir=cache)
    assert path == repo / "snapshots" / ("a" * 40)
    assert load_pretrained(path)[0].config.num_hidden_layers == 2


def test_a_local_dir_base_is_used_in_place(tmp_path):
    tiny_llama_dir(tmp_path / "models" / "base")
    assert resolve_base("models/base", tmp_path, tmp_path / ".selfloop") == tmp_path / "models" / "base"
    assert "LlamaForCausalLM" in describe_base("models/base", tmp_path)


def test_a_gguf_base_converts_once_into_safetensors_with_identical_logits(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", template=SMOLLM_TEMPLATE)
    assert "(llama, layers 2, hidden 32" in describe_base("tiny.gguf", tmp_path)
    state = tmp_path / ".selfloop"
    lines: list[str] = []
    out = resolve_base("tiny.gguf", tmp_path, state, log=lines.append)
    assert out.parent == state / "base" and out.name.startswith("tiny-")
    assert any("converting tiny.gguf" in line for line in lines)
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= files
    assert json.loads((out / "selfloop_source.json").read_text())["gguf"] == str(gguf)
    # Plain transformers loads it (no gguf_file), and its logits are the GGUF loader's exactly.
    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(out)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf.name)
    messages = [{"role": "user", "content": "the hat the"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    ref_ids = ref_tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    assert torch.equal(ids["input_ids"], ref_ids["input_ids"])
    with torch.no_grad():
        assert torch.equal(plain(**ids).logits, reference(**ids).logits)
    # The end-of-turn token is in the generation config, for plain generate().
    assert (
        tok.convert_tokens_to_ids("<|im_end|>")
        in json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    )
    # Converted once: a second resolve reuses the folder; a changed file converts again.
    again: list[str] = []
    assert resolve_base("tiny.gguf", tmp_path, state, log=again.append) == out and not again
    shutil.copy(write_tiny_gguf(tmp_path / "other.gguf", seed=1), gguf)
    assert resolve_base("tiny.gguf", tmp_path, state, log=again.append) != out and again
