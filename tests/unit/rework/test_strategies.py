import json
import random

import pytest

from selfloop import testing
from selfloop.config import ModelConfig, ReworkConfig
from selfloop.model.tokenizer import CHAT_TEMPLATE
from selfloop.rework.strategies import (
    CHARS_PER_TOKEN,
    Source,
    assemble,
    instruction_mode,
    parse_qa,
    plan_budget,
    rewrite_prompts,
    synthesize_prompts,
)

TEXT = " ".join(f"Sentence number {i} talks about rivers, trees and small birds." for i in range(40))
CHAT = json.dumps({"messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "5"}]})


def render(messages):
    return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def test_budget_is_spent_exactly_and_solve_share_moves_without_tasks():
    cfg = ReworkConfig(candidates_per_cycle=10, rewrite_share=0.5, synthesize_share=0.25, solve_share=0.25)
    with_tasks = plan_budget(cfg, have_tasks=True)
    assert sum(with_tasks.values()) == 10 and with_tasks["solve"] > 0
    without = plan_budget(cfg, have_tasks=False)
    assert sum(without.values()) == 10 and without["solve"] == 0
    assert plan_budget(ReworkConfig(candidates_per_cycle=0), True) == {"rewrite": 0, "synthesize": 0, "solve": 0}


def test_rewrite_text_is_a_prefix_continuation_with_the_original_kept():
    cfg = ReworkConfig(samples_per_prompt=2, max_new_tokens=24, prefix_fraction=0.5)
    prompts = rewrite_prompts(
        [Source(7, "text", TEXT)], 6, cfg, context_tokens=128, rng=random.Random(0), render_chat=render
    )
    assert len(prompts) == 3
    for p in prompts:
        assert p.source_ids == (7,) and p.strategy == "rewrite"
        assert p.text and p.original
        assert (p.text + p.original) in TEXT  # a contiguous window of the source
        d = assemble(p, " a new ending.")
        assert d.content == p.text + " a new ending." and d.original == p.original and d.completion == " a new ending."
        assert d.record_body() == {"text": d.content}


def test_rewrite_chat_regenerates_the_assistant_turn():
    cfg = ReworkConfig(samples_per_prompt=1)
    (p,) = rewrite_prompts([Source(3, "chat", CHAT)], 1, cfg, 128, random.Random(0), render)
    assert p.kind == "chat" and p.text == "<|user|>What is 2+3?<|end|><|assistant|>" and p.original == "5"
    d = assemble(p, " five ")
    assert d.record_body() == {
        "messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "five"}]
    }


def test_rewrite_with_instructions_asks_through_the_chat_template():
    cfg = ReworkConfig(
        samples_per_prompt=1, max_new_tokens=32, instruction_following=True, rewrite_prompt="Improve: {text}\nBetter:"
    )
    (p,) = rewrite_prompts([Source(1, "text", TEXT)], 1, cfg, 256, random.Random(1), render)
    assert p.text.startswith("<|user|>Improve: ") and p.text.endswith("\nBetter:<|end|><|assistant|>")
    # The whole passage is A, and it is short enough for its rewrite to fit max_new_tokens.
    assert p.original in TEXT and p.original in p.text and len(p.original) <= 32 * CHARS_PER_TOKEN
    d = assemble(p, "X")
    assert d.content == "X" and d.original == p.original


def test_instruction_mode_auto_means_a_chat_template_of_the_models_own():
    auto = ReworkConfig()
    assert auto.instruction_following == "auto"
    assert instruction_mode(auto, "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}")
    assert not instruction_mode(auto, CHAT_TEMPLATE)  # scratch models and template-less bases
    assert not instruction_mode(auto, None)
    assert instruction_mode(ReworkConfig(instruction_following=True), None)
    assert not instruction_mode(ReworkConfig(instruction_following=False), "{{ messages }}")


def test_synthesize_with_instructions_asks_for_a_question_and_answer_pair():
    cfg = ReworkConfig(samples_per_prompt=1, max_new_tokens=32)
    prompts = synthesize_prompts([Source(5, "text", TEXT)], 2, cfg, random.Random(0), render_chat=render)
    assert len(prompts) == 2
    p = prompts[0]
    assert p.kind == "qa" and p.text.startswith("<|user|>") and p.context["passage"] in TEXT
    assert p.context["passage"] in p.text and "Question:" in p.text
    d = assemble(p, "Question: What do sentences talk about?\nAnswer: Rivers, trees and small birds.")
    assert d.kind == "chat" and d.original is None
    assert d.record_body() == {
        "messages": [
            {"role": "user", "content": "What do sentences talk about?"},
            {"role": "assistant", "content": "Rivers, trees and small birds."},
        ]
    }
    assert assemble(p, "Rivers are long.") is None  # not a question/answer pair: no candidate


def test_question_answer_replies_are_parsed_leniently():
    assert parse_qa("**Question:** Why?\n**Answer:** Because.") == ("Why?", "Because.")
    assert parse_qa("question: a\nanswer: b\nmore b") == ("a", "b\nmore b")
    assert parse_qa("Question: only a question") is None
    assert parse_qa("Answer: no question") is None


def test_unusable_sources_yield_no_prompts():
    cfg = ReworkConfig(samples_per_prompt=1)
    bad_chat = Source(2, "chat", json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    assert (
        rewrite_prompts(
            [Source(1, "text", "too short"), bad_chat, Source(3, "chat", "{broken")],
            3,
            cfg,
            128,
            random.Random(0),
            render,
        )
        == []
    )
    assert rewrite_prompts([], 5, cfg, 128, random.Random(0), render) == []


def test_synthesize_seeds_are_document_openings():
    cfg = ReworkConfig(samples_per_prompt=4)
    prompts = synthesize_prompts([Source(5, "text", TEXT), Source(6, "chat", CHAT)], 8, cfg, random.Random(0))
    assert len(prompts) == 2
    assert all(TEXT.startswith(p.text) and p.source_ids == (5,) for p in prompts)
    assert assemble(prompts[0], " more").content == prompts[0].text + " more"


@pytest.fixture(scope="module")
def tiny_lm():
    from selfloop.model.factory import build_scratch_model
    from selfloop.model.tokenizer import train_tokenizer

    tok = train_tokenizer([TEXT] * 3, 300, max_length=64)
    return build_scratch_model(ModelConfig(**testing.TINY_MODEL), tok).eval(), tok


def test_continuation_nll_matches_the_model_loss_and_is_padding_invariant(tiny_lm):
    import torch

    from selfloop.model.score import continuation_nll

    model, tok = tiny_lm
    prompts = ["Sentence number 3 talks", "Sentence", "rivers"]
    conts = [" about rivers, trees and small birds.", " number 12 talks about", " and trees"]
    batched = continuation_nll(model, tok, prompts, conts, batch_size=8)
    single = [continuation_nll(model, tok, [p], [c])[0] for p, c in zip(prompts, conts)]
    assert batched == pytest.approx(single, rel=1e-4)
    p_ids = tok(prompts[0], add_special_tokens=False)["input_ids"]
    c_ids = tok(conts[0], add_special_tokens=False)["input_ids"]
    labels = torch.tensor([[-100] * len(p_ids) + c_ids])
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([p_ids + c_ids]), labels=labels).loss.item()
    assert batched[0] == pytest.approx(ref, rel=1e-4)
    assert continuation_nll(model, tok, ["x"], [""])[0] == float("inf")
    long = continuation_nll(model, tok, [TEXT], [TEXT])  # longer than the context: trimmed, still scored
    assert long[0] > 0
