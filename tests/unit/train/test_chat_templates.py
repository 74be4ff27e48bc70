"""The assistant-only loss mask with real chat templates (no ``{% generation %}`` marks needed)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_llama_dir, tiny_tokenizer

from selfloop.model.factory import adopt_chat_template, load_pretrained
from selfloop.model.tokenizer import CHAT_TEMPLATE, END_OF_TURN, train_tokenizer
from selfloop.records import Doc
from selfloop.train.data import (
    IGNORE,
    ChatSkip,
    chat_example,
    chat_skip_reasons,
    encode_chat,
    missing_kinds,
    trainable_kinds,
)

CONVERSATION = [
    {"role": "user", "content": "What does the cat see?"},
    {"role": "assistant", "content": "The cat sees the hat."},
    {"role": "user", "content": "And the dog?"},
    {"role": "assistant", "content": "The dog sees the fox."},
]
# What closes an assistant turn in each style: the loss covers the reply and this, never a header.
END = {"gpt2": "<|endoftext|>", "llama3": "<|eot_id|>", "smollm": "<|im_end|>\n", "qwen": "<|im_end|>\n"}


def loss_text(example, tokenizer) -> str:
    return tokenizer.decode([label for label in example["labels"] if label != IGNORE])


@pytest.mark.parametrize("style", sorted(END))
def test_only_the_assistant_replies_and_their_end_tokens_carry_loss(style):
    tok = tiny_tokenizer(style)
    assert "{% generation %}" not in tok.chat_template
    example = chat_example(CONVERSATION, tok, block_size=256)
    assert loss_text(example, tok) == "".join(m["content"] + END[style] for m in CONVERSATION[1::2])
    # Every token is the rendered conversation's, in order; padding carries no loss.
    rendered = tok.apply_chat_template(CONVERSATION, tokenize=False)
    n = sum(example["attention_mask"])
    assert tok.decode(example["input_ids"][:n]) == rendered
    assert all(label == IGNORE for label, m in zip(example["labels"], example["attention_mask"]) if not m)
    # A default system turn (SmolLM, Qwen) and the user turns stay out of the loss.
    assert "user" not in loss_text(example, tok) and "system" not in loss_text(example, tok)


def test_the_mask_equals_the_generation_marks_where_a_template_has_them():
    tok = train_tokenizer([json.dumps(CONVERSATION)] * 5, 320, max_length=64)
    assert "{% generation %}" in tok.chat_template
    marked = tok.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
    example = chat_example(CONVERSATION, tok, block_size=256)
    n = len(marked["input_ids"])
    assert example["input_ids"][:n] == list(marked["input_ids"])
    assert [label != IGNORE for label in example["labels"][:n]] == [bool(m) for m in marked["assistant_masks"]]


def test_why_a_conversation_trains_as_nothing():
    tok = tiny_tokenizer("smollm")
    with pytest.raises(ChatSkip, match="no assistant turn"):
        chat_example(CONVERSATION[:1], tok, 256)
    with pytest.raises(ChatSkip, match="after block_size"):
        chat_example(CONVERSATION[:2], tok, 8)  # the default system turn alone is longer
    with pytest.raises(ChatSkip, match="no chat template"):
        chat_example(CONVERSATION, tiny_tokenizer("none"), 256)
    # A template that drops a past assistant turn's content once the next turn follows.
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not loop.last %}...{% else %}{{ m.content }}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ChatSkip, match="renders turn 1 differently"):
        chat_example(CONVERSATION, tok, 256)
    assert encode_chat(CONVERSATION, tok, 256) is None


def doc(i: int, kind: str, content) -> Doc:
    text = content if isinstance(content, str) else json.dumps(content)
    return Doc(id=i, origin="orig", kind=kind, content=text, n_chars=len(text), hash=str(i))


def test_counts_by_kind_and_the_reasons_for_a_kind_with_no_example():
    docs = [
        doc(1, "text", "plain text"),
        doc(2, "chat", {"messages": CONVERSATION}),
        doc(3, "task", {"prompt": "add 1 and 2", "tests": "assert f() == 3"}),  # bare: not a training document
        doc(4, "task", {"prompt": "add 1 and 2", "solution": "3"}),
        doc(5, "chat", "{not json"),
    ]
    assert trainable_kinds(docs) == {"text": 1, "chat": 3}
    assert missing_kinds({"text": 1, "chat": 3}, {"text": 4, "chat": 0}) == ["chat"]
    assert missing_kinds({"text": 1, "chat": 0}, {"text": 4, "chat": 0}) == []
    reasons = chat_skip_reasons(docs, tiny_tokenizer("none"), 256)
    assert reasons == {
        "the tokenizer has no chat template": [2, 4],
        "not a conversation (no list of role/content messages)": [5],
    }


def test_a_model_without_a_chat_template_gets_selfloops_with_resized_embeddings(tmp_path):
    path = tiny_llama_dir(tmp_path / "base", style="none")
    model, tok = load_pretrained(path)  # as the training child loads it (pad = eos where none)
    rows = model.get_input_embeddings().num_embeddings
    added = adopt_chat_template(model, tok)
    assert added == [END_OF_TURN, "<|system|>", "<|user|>", "<|assistant|>"]
    assert tok.chat_template == CHAT_TEMPLATE
    assert model.get_input_embeddings().num_embeddings == len(tok) == rows + 4
    example = chat_example(CONVERSATION, tok, 256)
    assert loss_text(example, tok) == "".join(m["content"] + END_OF_TURN for m in CONVERSATION[1::2])
    with torch.no_grad():  # the new ids are usable
        model(torch.tensor([example["input_ids"]]))
    assert adopt_chat_template(model, tok) == []  # it has one now
