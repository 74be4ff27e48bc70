"""The scratch tokenizer: byte-level BPE trained on the corpus, with a chat template.

Covers: training a byte-level BPE (``tokenizers``), wrapping it as ``PreTrainedTokenizerFast`` with the special
tokens of a conversation, and the Jinja chat template whose ``{% generation %}`` marks yield the assistant-only loss
mask (``return_assistant_tokens_mask=True``).

Does not cover: tokenizers of local base models (they bring their own) or how the texts are chosen (the training
child passes the orig training split).
"""

from __future__ import annotations

from collections.abc import Iterable

BOS_EOS = "<|endoftext|>"
PAD = "<|pad|>"
END_OF_TURN = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [BOS_EOS, PAD, END_OF_TURN, *ROLE_TOKENS.values()]

# One token sequence per conversation: <|role|>content<|end|> ... Only the
# assistant's content and its end-of-turn token sit inside {% generation %},
# so those are the tokens that carry loss, and the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown chat role: ' ~ message['role']) }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, max_length: int):
    """Train a byte-level BPE on ``texts`` and return a ``PreTrainedTokenizerFast``.

    Byte-level means every input is encodable (no unknown token) and decoding is
    lossless; ``vocab_size`` counts the 256 byte symbols and the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps character offsets exact, which the assistant mask relies on.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_EOS,
        eos_token=BOS_EOS,
        pad_token=PAD,
        additional_special_tokens=[END_OF_TURN, *ROLE_TOKENS.values()],
        model_max_length=max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a generation: end of turn (when the tokenizer has one) and eos."""
    ids = []
    for token in (END_OF_TURN, tokenizer.eos_token):
        if token is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is not None and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def end_token_ids(tokenizer, model_eos: int | list[int] | None = None) -> list[int]:
    """Every id that ends a turn: the model's own eos ids (its generation config) first, then selfloop's, added."""
    own = [model_eos] if isinstance(model_eos, int) else list(model_eos or [])
    return list(dict.fromkeys([*own, *stop_token_ids(tokenizer)]))
