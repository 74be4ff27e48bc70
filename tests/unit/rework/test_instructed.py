"""Rework in instruction mode: a model with its own chat template is asked through it; a scratch model continues."""

from __future__ import annotations

import pytest
from tiny_models import tiny_llama_dir

from selfloop import testing
from selfloop.config import Config, ModelConfig
from selfloop.model.factory import build_scratch_model, load_pretrained
from selfloop.model.tokenizer import train_tokenizer
from selfloop.rework.phase import generate_drafts
from selfloop.rework.strategies import Source

pytestmark = pytest.mark.slow  # generates with two small models

TEXT = " ".join(f"Sentence number {i} talks about rivers, trees and small birds." for i in range(40))
SOURCES = [Source(1, "text", TEXT), Source(2, "text", TEXT[::-1])]


def config() -> Config:
    return Config(
        rework={
            "candidates_per_cycle": 6,
            "rewrite_share": 0.5,
            "synthesize_share": 0.5,
            "solve_share": 0,
            "samples_per_prompt": 1,
            "max_new_tokens": 24,
            "temperature": 0,
        }
    )


@pytest.fixture(scope="module")
def instruct(tmp_path_factory):
    return load_pretrained(tiny_llama_dir(tmp_path_factory.mktemp("m") / "smol", style="smollm"))


def test_a_model_with_its_own_chat_template_is_asked_through_it(instruct):
    model, tok = instruct
    cfg = config()
    drafts, stats = generate_drafts(cfg, SOURCES, model, tok, cycle_id=1)
    assert stats["instructed"] is True
    rewrites = [d for d in drafts if d.strategy == "rewrite"]
    assert len(rewrites) == 3
    for d in rewrites:
        # The model's template (its default system turn included) around the configured request.
        assert d.prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert cfg.rework.rewrite_prompt.split("{text}")[0] in d.prompt and d.prompt.endswith("<|im_start|>assistant\n")
        assert d.original in d.prompt and d.content == d.completion  # B replaces the whole passage A
    # Random weights write no "Question: ... Answer: ..." pair: those replies are counted, not kept.
    synthesized = [d for d in drafts if d.strategy == "synthesize"]
    assert len(synthesized) + stats.get("unparsed", 0) == 3
    assert all(d.kind == "chat" for d in synthesized)


def test_a_scratch_model_keeps_prefix_continuation():
    tok = train_tokenizer([TEXT] * 3, 300, max_length=64)
    model = build_scratch_model(ModelConfig(**testing.TINY_MODEL), tok).eval()
    drafts, stats = generate_drafts(config(), SOURCES, model, tok, cycle_id=1)
    assert stats["instructed"] is False
    assert drafts and all("<|user|>" not in d.prompt and d.prompt in d.content for d in drafts)
