"""The training child from a pretrained base: real chat templates train, a missing one is added, nothing is dropped
silently, and the generation loads with plain transformers and stops at every end-of-turn token."""

from __future__ import annotations

import json

import pytest
from lifecycle_helpers import prepared_run
from tiny_models import tiny_llama_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfloop.model.tokenizer import CHAT_TEMPLATE, END_OF_TURN
from selfloop.train.run import main
from selfloop.train.rundir import RunDir, RunValues

STEPS = 3


def train_from(tmp_path, base, capsys):
    _, cfg, paths, run_dir = prepared_run(
        tmp_path / "project",
        {"train": {"log_steps": 1, "batch_size": 4, "block_size": 128}, "model": {"n_positions": 128}},
    )
    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init=str(base), steps=STEPS))
    code = main(["--out", str(run_dir)])
    out = capsys.readouterr()
    return code, out.out + out.err, RunDir(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["smollm", "llama3"])
def test_a_base_with_a_real_chat_template_trains_on_its_chats(tmp_path, capsys, style):
    base = tiny_llama_dir(tmp_path / "base", style=style)
    code, log, run = train_from(tmp_path, base, capsys)
    assert code == 0, log
    result = json.loads(run.result.read_text())
    assert result["examples"]["chat"] == 16 and result["examples"]["text"] > 0  # fill_corpus: 16 train chats
    assert "examples by kind: text" in log and "chat 16 from 16 documents" in log
    tok = AutoTokenizer.from_pretrained(run.final)  # plain transformers, no selfloop code
    assert tok.chat_template == AutoTokenizer.from_pretrained(base).chat_template
    model = AutoModelForCausalLM.from_pretrained(run.final)
    assert tok.eos_token_id in model.generation_config.eos_token_id


@pytest.mark.slow
def test_a_base_without_a_chat_template_gets_selfloops_and_keeps_its_own_eos(tmp_path, capsys):
    base = tiny_llama_dir(tmp_path / "base", style="none")
    code, log, run = train_from(tmp_path, base, capsys)
    assert code == 0, log
    assert "has no chat template: using selfloop's" in log and "embeddings resized to" in log
    assert json.loads(run.result.read_text())["examples"]["chat"] == 16
    tok = AutoTokenizer.from_pretrained(run.final)
    model = AutoModelForCausalLM.from_pretrained(run.final)
    assert tok.chat_template == CHAT_TEMPLATE
    assert model.get_input_embeddings().num_embeddings == len(tok)
    # The model's own eos stays first; selfloop's end of turn is added, not put in its place.
    eos = model.generation_config.eos_token_id
    assert eos[0] == tok.convert_tokens_to_ids("</s>") and tok.convert_tokens_to_ids(END_OF_TURN) in eos
    assert json.loads((run.final / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_chats_that_all_train_as_nothing_are_an_error_with_the_reason(tmp_path, capsys):
    base = tiny_llama_dir(tmp_path / "base", style="smollm")
    (base / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no assistant turns here') }}"
        "{% endif %}{{ m.content }}{% endfor %}"
    )
    code, log, run = train_from(tmp_path, base, capsys)
    assert code == 1
    assert "16 chat documents gave no training example: the chat template refused it" in log
    assert "no assistant turns here" in log and not run.final.exists()


@pytest.mark.slow
def test_lora_from_a_bf16_base_saves_merged_bf16_and_trains_the_added_token_rows(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    base = tiny_llama_dir(tmp_path / "base", style="none", dtype=torch.bfloat16)
    _, cfg, paths, run_dir = prepared_run(
        tmp_path / "project",
        {
            "train": {"log_steps": 1, "batch_size": 4, "block_size": 128, "learning_rate": 0.01},
            "model": {"n_positions": 128, "lora": "auto", "lora_min_params": 0, "lora_r": 4},
        },
    )
    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init=str(base), steps=STEPS))
    assert main(["--out", str(run_dir)]) == 0
    log = capsys.readouterr().out
    assert "LoRA r=4 alpha=16 dropout=0.05 on q_proj, v_proj:" in log  # peft's default targets for llama
    final = RunDir(run_dir).final
    assert not (final / "adapter_config.json").exists()  # merged: plain Auto classes load it
    after = load_file(final / "model.safetensors")
    before = load_file(base / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in after.values())
    embedding = "model.embed_tokens.weight"
    changed = {k for k in before if k != embedding and not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed
    # The embedding grew by the 4 added tokens (whose rows LoRA trains); the base's rows are untouched.
    rows = before[embedding].shape[0]
    assert torch.equal(after[embedding][:rows], before[embedding]) and after[embedding].shape[0] == rows + 4
