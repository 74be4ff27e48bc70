"""generate(): the faster paths (prompts batched by length, static cache, each prompt encoded once for
its n samples) sample exactly what plain ``model.generate`` samples, on GPT-2 and on other architectures
(Llama; Mistral with a sliding window and Mamba, where the shared prompt cache does not apply)."""

from __future__ import annotations

import warnings

import pytest
import torch
from lifecycle_helpers import paragraph
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MambaConfig,
    MambaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from selfloop.model.factory import load_pretrained
from selfloop.model.generate import (
    generate,
    length_batches,
    shared_prompt_cache,
    valid_unicode,
)
from selfloop.model.tokenizer import stop_token_ids, train_tokenizer

TEXTS = [paragraph(i) for i in range(30)]
# Token lengths strictly increasing, so the length-ordered batches keep the callers' order.
PROMPTS = ["The cat", "A dog sees the river", "My friend helps the old man and the small bird home", TEXTS[0][:100]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, 320, max_length=64)


def _special(tok) -> dict:
    return {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}


def _gpt2(tok):
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2, **_special(tok))
    )


def _llama(tok):
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            **_special(tok),
        )
    )


def _mistral(tok):
    # A sliding window shorter than the prompts: its cache layers are not plain full attention.
    return MistralForCausalLM(
        MistralConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            sliding_window=8,
            **_special(tok),
        )
    )


def _mamba(tok):
    # Recurrent state, no KV cache: generate keeps it outside a Cache.
    return MambaForCausalLM(
        MambaConfig(vocab_size=len(tok), hidden_size=32, state_size=4, num_hidden_layers=2, **_special(tok))
    )


@pytest.fixture(scope="module", params=[_gpt2, _llama, _mistral, _mamba], ids=["gpt2", "llama", "mistral", "mamba"])
def saved(request, tmp_path_factory, tokenizer):
    """A tiny model of each architecture, saved and reloaded the way selfloop loads a local base model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param.__name__.strip("_"))
    request.param(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_pretrained(path)


def plain_generate(model, tok, prompts, *, n, max_new_tokens, seed, temperature=1.0, top_p=0.9) -> list[list[str]]:
    """The reference: one left-padded batch through ``model.generate``, its default cache, num_return_sequences."""
    stops = stop_token_ids(tok)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    batch = tok.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        out = model.generate(
            **batch,
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            top_k=None,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            eos_token_id=stops,
            pad_token_id=tok.pad_token_id,
        )
    texts = []
    for i in range(len(prompts)):
        row = []
        for seq in out[i * n : (i + 1) * n, batch["input_ids"].shape[1] :].tolist():
            cut = next((k + 1 for k, t in enumerate(seq) if t in stops), len(seq))
            row.append(valid_unicode(tok.decode(seq[:cut], skip_special_tokens=True)))
        texts.append(row)
    return texts


def test_generate_samples_what_plain_model_generate_samples(saved):
    model, tok = saved
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    assert lengths == sorted(set(lengths))  # the length order is the callers' order here
    for seed in (3, 4):
        ours = generate(model, tok, PROMPTS, n=3, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=seed)
        assert ours.texts == plain_generate(model, tok, PROMPTS, n=3, max_new_tokens=12, seed=seed)
        assert all(1 <= c <= 12 for counts in ours.new_tokens for c in counts)


def test_generate_hands_the_cache_over_without_the_deprecated_keyword(saved):
    # transformers 5.24 deprecates past_key_values for generate and prepare_inputs_for_generation.
    model, tok = saved
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(model, tok, PROMPTS[:2], n=2, max_new_tokens=4, temperature=1.0, seed=1)
    assert not [str(w.message) for w in caught if "past_key_values" in str(w.message)]


def test_generate_shares_the_prompt_cache_only_for_full_attention_layers(saved, tokenizer):
    model, tok = saved
    batch = tok.pad(
        {"input_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:2]]},
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    width = batch["input_ids"].shape[1]
    with torch.inference_mode():
        cache = shared_prompt_cache(model, batch, 3, width + 8)
        if model.config.model_type in ("mistral", "mamba"):
            assert cache is None  # sliding-window layers, recurrent state: generate encodes the copies itself
        else:
            assert cache is not None and int(cache.get_seq_length()) == width - 1
            assert cache.layers[0].keys.shape[0] == 2 * 3  # each prompt repeated for its draws
        assert shared_prompt_cache(model, batch, 1, width + 8) is None  # one draw: nothing to share


def test_generate_keeps_results_in_prompt_order_across_length_batches(saved):
    model, tok = saved
    prompts = [PROMPTS[3], PROMPTS[0], PROMPTS[2], PROMPTS[1]]
    # Greedy: each prompt's continuation depends on nothing but the prompt, whatever its batch.
    mixed = generate(model, tok, prompts, temperature=0, max_new_tokens=8, batch_size=2)
    alone = [generate(model, tok, [p], temperature=0, max_new_tokens=8).texts[0] for p in prompts]
    assert mixed.texts == alone
    again = generate(model, tok, prompts, n=2, max_new_tokens=8, temperature=1.0, batch_size=3, seed=9)
    assert (
        again.texts == generate(model, tok, prompts, n=2, max_new_tokens=8, temperature=1.0, batch_size=3, seed=9).texts
    )
    assert [len(t) for t in again.texts] == [2, 2, 2, 2]


def test_length_batches_group_similar_lengths_stably():
    assert length_batches([5, 1, 5, 3, 1], 2) == [[1, 4], [3, 0], [2]]
    assert length_batches([], 4) == []
    assert length_batches([2, 2, 2], 8) == [[0, 1, 2]]
