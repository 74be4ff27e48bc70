"""Scratch tokenizer and model: training, reload, chat template, Auto-class loading, generation, hot reload."""

from __future__ import annotations

import importlib.util
import threading

import pytest
import torch
from lifecycle_helpers import chat_record, paragraph
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfloop import testing
from selfloop.config import ModelConfig
from selfloop.errors import SelfloopError
from selfloop.model.base import local_model_dir
from selfloop.model.factory import apply_lora, build_scratch_model, load_pretrained
from selfloop.model.generate import generate
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry
from selfloop.model.tokenizer import END_OF_TURN, stop_token_ids, train_tokenizer
from selfloop.train.data import IGNORE, encode_chat

TINY_MODEL = ModelConfig(**testing.TINY_MODEL)
TEXTS = [paragraph(i) for i in range(30)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, TINY_MODEL.vocab_size, max_length=TINY_MODEL.n_positions)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    model = build_scratch_model(TINY_MODEL, tokenizer)
    path = tmp_path_factory.mktemp("gen")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model


def test_tokenizer_trains_and_reloads_identically(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    probe = TEXTS[:3] + ["unseen: ünïcode ✓ and\ttabs\n", "def f(x):\n    return x"]
    for text in probe:
        assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert again.decode(again(text)["input_ids"]) == text  # byte-level: lossless
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.chat_template == tokenizer.chat_template
    assert len(again) <= TINY_MODEL.vocab_size
    # Training is deterministic too: the same texts give the same vocabulary.
    assert train_tokenizer(TEXTS, TINY_MODEL.vocab_size, max_length=64).get_vocab() == tokenizer.get_vocab()


def test_chat_template_round_trips_and_masks_non_assistant_tokens(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, *chat_record(3)["messages"]]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert (
        rendered
        == "<|system|>Be brief.<|end|><|user|>"
        + messages[1]["content"]
        + "<|end|><|assistant|>"
        + messages[2]["content"]
        + "<|end|>"
    )
    enc = encode_chat(messages, tokenizer, block_size=64)
    ids = [i for i, m in zip(enc["input_ids"], enc["attention_mask"]) if m]
    assert tokenizer.decode(ids) == rendered  # one token sequence, special tokens intact
    trained = [t for t in enc["labels"] if t != IGNORE]
    # Exactly the assistant's reply and its end-of-turn token carry loss.
    assert tokenizer.decode(trained) == messages[2]["content"] + END_OF_TURN
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|user|>" + messages[1]["content"] + "<|end|><|assistant|>")
    with pytest.raises(Exception, match="unknown chat role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_generation_loads_with_auto_classes(saved):
    path, model = saved
    loaded = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ids = torch.tensor([tok(TEXTS[0])["input_ids"][:20]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits)
    assert (path / "model.safetensors").is_file()
    assert loaded.config.pad_token_id == tok.pad_token_id


def test_missing_local_base_is_a_clear_error(tmp_path):
    with pytest.raises(SelfloopError, match="does not exist"):
        local_model_dir("models/nowhere", tmp_path)
    with pytest.raises(SelfloopError, match="cannot load model"):
        load_pretrained(tmp_path)


def test_generation_is_batched_and_reproducible(saved):
    path, _ = saved
    model, tok = load_pretrained(path)
    prompts = ["The cat sees", "A dog", "My friend helps the old man and"]
    kwargs = dict(n=3, max_new_tokens=12, temperature=1.0, top_p=0.95, batch_size=2)
    a = generate(model, tok, prompts, seed=7, **kwargs)
    b = generate(model, tok, prompts, seed=7, **kwargs)
    assert a.texts == b.texts and a.new_tokens == b.new_tokens
    assert len(a.texts) == 3 and all(len(t) == 3 for t in a.texts)
    assert all(1 <= n <= 12 for counts in a.new_tokens for n in counts)
    assert a.tokens_per_s > 0
    c = generate(model, tok, prompts, seed=8, **kwargs)
    assert c.texts != a.texts
    # Left padding: a prompt's greedy continuation does not depend on its batch mates.
    alone = generate(model, tok, prompts[1:2], temperature=0, max_new_tokens=8)
    batched = generate(model, tok, prompts, temperature=0, max_new_tokens=8)
    assert alone.texts[0] == batched.texts[1]
    chat = generate(model, tok, ["What does the cat see?"], chat=True, temperature=0, max_new_tokens=8)
    assert len(chat.texts[0]) == 1
    assert set(stop_token_ids(tok)) == {tok.convert_tokens_to_ids(END_OF_TURN), tok.eos_token_id}


def test_holder_swaps_on_pointer_move_and_keeps_work_in_flight(tmp_path, saved):
    path, _ = saved
    reg = Registry(tmp_path / "models")
    for n in (0, 1):
        reg.add(n, path, {"parent": None if n == 0 else 0}, {})
        reg.update(n, status="promoted")
    reg.set_current(0)
    loads = []

    def loader(p):
        loads.append(p.name)
        return load_pretrained(p)

    holder = ModelHolder(reg, loader)
    with holder.acquire() as first:
        assert first.generation == 0
        reg.set_current(1)
        assert holder.reload_if_changed() is True
        # Work in flight still holds generation 0's objects, untouched.
        assert first.generation == 0 and first.model is not None
        with holder.acquire() as second:
            assert second.generation == 1 and second.model is not first.model
    assert holder.reload_if_changed() is False
    assert loads == ["gen-0000", "gen-0001"]

    # Concurrent reloads load once.
    reg.set_current(0)
    threads = [threading.Thread(target=holder.reload_if_changed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["gen-0000", "gen-0001", "gen-0000"] and holder.generation == 0


def test_holder_without_champion_says_so(tmp_path):
    holder = ModelHolder(Registry(tmp_path / "models"), load_pretrained)
    with pytest.raises(SelfloopError, match="no current model"):
        with holder.acquire():
            pass


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft is installed")
def test_lora_without_peft_is_a_clear_error(saved):
    _, model = saved
    with pytest.raises(SelfloopError, match="needs peft"):
        apply_lora(model, TINY_MODEL)
