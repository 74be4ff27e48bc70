"""LoRA knobs (rank, alpha, dropout, target modules), the "auto" size threshold, and the saved dtype."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_llama_dir

from selfloop.config import ModelConfig
from selfloop.errors import SelfloopError
from selfloop.model.factory import apply_lora, load_pretrained, lora_config, save_generation, saved_dtype, use_lora

pytest.importorskip("peft")
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("base") / "tiny", dtype=torch.bfloat16)


def test_auto_means_lora_for_pretrained_models_from_the_threshold_up(base):
    model, _ = load_pretrained(base)
    n = sum(p.numel() for p in model.parameters())
    assert not use_lora(ModelConfig(), model, pretrained=True)  # 50M by default; this one is tiny
    assert use_lora(ModelConfig(lora_min_params=n), model, pretrained=True)
    assert not use_lora(ModelConfig(lora_min_params=0), model, pretrained=False)  # scratch: full weights
    assert use_lora(ModelConfig(lora=True), model, pretrained=False)
    assert not use_lora(ModelConfig(lora=False, lora_min_params=0), model, pretrained=True)


def test_the_knobs_reach_peft_and_only_the_adapters_train(base):
    cfg = ModelConfig(lora=True, lora_r=4, lora_alpha=32, lora_dropout=0.1, lora_target_modules=ATTENTION)
    peft_cfg = lora_config(cfg)
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (4, 32, 0.1)
    assert set(peft_cfg.target_modules) == set(ATTENTION)
    assert lora_config(ModelConfig(lora_target_modules=["all-linear"])).target_modules == "all-linear"
    model, _ = load_pretrained(base, dtype=torch.float32, for_training=True)
    wrapped = apply_lora(model, cfg)
    trainable, _ = wrapped.get_nb_trainable_parameters()
    c = model.config
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    # r x (in + out) per adapted projection: q and o are hidden -> hidden, k and v hidden -> kv.
    per_layer = 4 * ((c.hidden_size + c.hidden_size) * 2 + (c.hidden_size + kv) * 2)
    assert trainable == per_layer * c.num_hidden_layers
    assert all("lora_" in name for name, p in wrapped.named_parameters() if p.requires_grad)
    with pytest.raises(SelfloopError, match="lora_target_modules"):
        apply_lora(load_pretrained(base)[0], ModelConfig(lora_target_modules=["no_such_proj"]))


def test_a_generation_is_saved_in_the_base_dtype_with_every_end_token(base, tmp_path):
    assert saved_dtype(base) == torch.bfloat16
    assert saved_dtype(tmp_path) is None
    model, tok = load_pretrained(base, dtype=torch.float32)
    out = save_generation(model, tok, tmp_path / "gen", dtype=saved_dtype(base))
    again, _ = load_pretrained(out)
    assert next(again.parameters()).dtype == torch.bfloat16
    assert tok.eos_token_id in again.generation_config.eos_token_id
