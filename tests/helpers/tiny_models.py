"""Tiny pretrained-style models for tests: real architectures and real chat templates, random weights.

``tiny_tokenizer`` trains a byte-level BPE with a style's special tokens and template (GPT-2, Llama 3 / SmolLM,
Qwen 2.5 ChatML, or none); ``tiny_llama_dir`` saves a 2-layer ``LlamaForCausalLM`` with it; ``write_tiny_gguf``
writes a 2-layer llama GGUF (byte-level vocabulary, ChatML template) with the ``gguf`` package's writer.
"""

from __future__ import annotations

from pathlib import Path

# The template of GPT-2-style models that have one (transformers' old default): contents and eos, no roles.
GPT2_TEMPLATE = "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"

# Llama 3's template, as Llama-3.x-Instruct ships it (tools and dates left out): bos, role headers, <|eot_id|>.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# SmolLM2-Instruct's template: ChatML with a default system turn.
SMOLLM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2.5-Instruct's template without the tool branches: ChatML, default system turn.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

STYLES = {
    # style: (template, bos, eos, pad, extra special tokens)
    "gpt2": (GPT2_TEMPLATE, "<|endoftext|>", "<|endoftext|>", None, []),
    "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", None, ["<|start_header_id|>", "<|end_header_id|>"]),
    "smollm": (SMOLLM_TEMPLATE, "<|im_start|>", "<|im_end|>", "<|im_end|>", ["<|endoftext|>"]),
    "qwen": (QWEN_TEMPLATE, None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>", "<|endoftext|>"]),
    "none": (None, "<s>", "</s>", None, []),
}

TEXTS = [
    "The quick brown fox jumps over the lazy dog. A short sentence about nothing.",
    "Rewrite the following text more clearly and fix its errors. Water boils at 100 degrees.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "You are a helpful assistant. What is two plus two? Four. Thanks!",
]


def tiny_tokenizer(style: str, vocab_size: int = 400):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``style``'s special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    template, bos, eos, pad, extra = STYLES[style]
    specials = list(dict.fromkeys(t for t in (bos, eos, pad, *extra) if t))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, additional_special_tokens=extra
    )
    fast.chat_template = template
    return fast


def tiny_llama_dir(path: Path, style: str = "smollm", *, dtype=None) -> Path:
    """A 2-layer ``LlamaForCausalLM`` (random weights) and a ``style`` tokenizer saved to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tiny_tokenizer(style)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def write_tiny_gguf(path: Path, *, template: str | None = SMOLLM_TEMPLATE, seed: int = 0) -> Path:
    """A 2-layer llama GGUF with a byte-level vocabulary (ChatML specials), fp32 tensors, random weights."""
    import gguf
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["h e", "t h", "th e", "Ġ t"]
    tokens = specials + list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in merges]
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))  # 3: control, 1: normal
    vocab, hidden, ffn, layers, heads, kv_heads = len(tokens), 32, 64, 2, 4, 2
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    if template:
        w.add_chat_template(template)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(vocab, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("output.weight", weight(vocab, hidden))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_heads * head_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_heads * head_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_output.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ffn, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(ffn, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
