"""What the model is asked to write each cycle (pure: no model, no I/O).

A strategy turns source documents into *prompts* and each sample into a *draft* candidate for the eval space:
**rewrite** regenerates part of an existing sample and keeps the original (A) for the A-vs-B judge; **synthesize**
continues a short seed, with no A to beat. A model that follows instructions (instruction mode) is asked through its
chat template instead: rewrite a passage (the configured prompt), or write a question/answer pair about a passage
(Self-Instruct style), which becomes a chat record; a small scratch model keeps prefix continuation.

Does not cover: task solving (``selfloop.rework.solve``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfloop.config import ReworkConfig
from selfloop.model.tokenizer import CHAT_TEMPLATE

# Characters per token of a byte-level BPE on English text and code, roughly.
# Used only to size text windows so that prompts fit the model's context.
CHARS_PER_TOKEN = 3.5


@dataclass(frozen=True)
class Source:
    """A document a strategy may draw from."""

    id: int
    kind: str  # text | chat
    content: str  # text, or canonical JSON {"messages": [...]} for chat


@dataclass(frozen=True)
class Prompt:
    strategy: str
    kind: str
    source_ids: tuple[int, ...]
    text: str  # exactly what the model continues (chat prompts are already rendered by the template)
    original: str | None = None  # A: the original continuation, when there is one
    context: dict[str, Any] = field(default_factory=dict)  # what assemble() needs


@dataclass(frozen=True)
class Draft:
    """A candidate before judgement."""

    strategy: str
    kind: str  # text | chat
    source_ids: tuple[int, ...]
    content: str  # text, or canonical JSON {"messages": [...]}
    prompt: str  # what the model saw (for pairs)
    completion: str  # what the model wrote (B)
    original: str | None  # A, when the strategy has one

    def record_body(self) -> dict[str, Any]:
        """The training payload of a rework record: {"text"} or {"messages"}."""
        if self.kind == "chat":
            return {"messages": json.loads(self.content)["messages"]}
        return {"text": self.content}


def instruction_mode(cfg: ReworkConfig, chat_template: str | None) -> bool:
    """Whether the model is asked with instructions: ``instruction_following``, or for "auto" a model that has a
    chat template of its own (not selfloop's, which scratch models and template-less bases get)."""
    if cfg.instruction_following != "auto":
        return bool(cfg.instruction_following)
    return bool(chat_template) and chat_template != CHAT_TEMPLATE


def _ask(render_chat: Callable[[list[dict[str, str]]], str], instruction: str) -> str:
    return render_chat([{"role": "user", "content": instruction}])


def plan_budget(cfg: ReworkConfig, have_tasks: bool) -> dict[str, int]:
    """Candidates per strategy this cycle. Without tasks, the solve share goes to the others."""
    shares = {
        "rewrite": cfg.rewrite_share,
        "synthesize": cfg.synthesize_share,
        "solve": cfg.solve_share if have_tasks else 0.0,
    }
    total = sum(shares.values())
    if total <= 0 or cfg.candidates_per_cycle <= 0:
        return {k: 0 for k in shares}
    counts = {k: int(cfg.candidates_per_cycle * v / total) for k, v in shares.items()}
    # Hand the rounding remainder to the largest shares so the budget is spent exactly.
    for k in sorted(shares, key=shares.get, reverse=True)[: cfg.candidates_per_cycle - sum(counts.values())]:
        counts[k] += 1
    return counts


def _cut_at_space(text: str, pos: int) -> int:
    """A cut position near ``pos`` that falls on whitespace (so no word is split)."""
    if pos <= 0 or pos >= len(text):
        return max(0, min(pos, len(text)))
    m = re.search(r"\s", text[pos:])
    return pos + m.start() if m and m.start() < 40 else pos


def rewrite_prompts(
    sources: Sequence[Source],
    count: int,
    cfg: ReworkConfig,
    context_tokens: int,
    rng: random.Random,
    render_chat: Callable[[list[dict[str, str]]], str],
    *,
    instructed: bool | None = None,
) -> list[Prompt]:
    """Rewrite prompts for ``count`` candidates (each prompt is sampled ``samples_per_prompt`` times).

    ``render_chat`` renders a conversation with the tokenizer's chat template plus
    the assistant header (``apply_chat_template(..., add_generation_prompt=True)``).

    A tiny scratch model follows no instructions, so by default it is conditioned on the
    start of a window of the sample and regenerates the rest (prefix continuation). In
    instruction mode (``instructed``; None: ``instruction_following is True``) the model gets
    ``rewrite_prompt`` around a passage short enough for its rewrite to fit ``max_new_tokens``,
    as a user turn of its chat template, and the whole passage is A. For chat records the last
    assistant turn is regenerated.
    """
    if instructed is None:
        instructed = cfg.instruction_following is True
    prompts: list[Prompt] = []
    n_prompts = max(0, -(-count // cfg.samples_per_prompt))
    if not sources or not n_prompts:
        return prompts
    picks = [sources[rng.randrange(len(sources))] for _ in range(n_prompts)]
    suffix_chars = int(cfg.max_new_tokens * CHARS_PER_TOKEN)
    window_chars = int(
        min(context_tokens - cfg.max_new_tokens, cfg.max_new_tokens / (1 - cfg.prefix_fraction)) * CHARS_PER_TOKEN
    )
    prefix_chars = max(16, int(window_chars * cfg.prefix_fraction))
    for src in picks:
        if src.kind == "chat":
            p = _chat_rewrite(src, render_chat)
            if p:
                prompts.append(p)
            continue
        text = src.content
        if instructed:
            if p := _instructed_rewrite(src, cfg, rng, render_chat):
                prompts.append(p)
            continue
        if len(text) < prefix_chars + 32:
            continue
        start = _cut_at_space(text, rng.randrange(0, max(1, len(text) - prefix_chars - suffix_chars // 2)))
        cut = _cut_at_space(text, start + prefix_chars)
        end = _cut_at_space(text, cut + suffix_chars)
        prefix, original = text[start:cut].lstrip(), text[cut:end]
        if not original.strip():
            continue
        prompts.append(Prompt("rewrite", "text", (src.id,), prefix, original=original, context={"prefix": prefix}))
    return prompts


def _passage(text: str, chars: int, rng: random.Random) -> str:
    """A window of about ``chars`` characters of ``text``, cut at whitespace."""
    start = _cut_at_space(text, rng.randrange(0, max(1, len(text) - chars)))
    return text[start : _cut_at_space(text, start + chars)].strip()


def _instructed_rewrite(
    src: Source, cfg: ReworkConfig, rng: random.Random, render_chat: Callable[[list[dict[str, str]]], str]
) -> Prompt | None:
    # About three quarters of the token budget, so the rewrite of the passage fits in it.
    passage = _passage(src.content, int(cfg.max_new_tokens * CHARS_PER_TOKEN * 0.75), rng)
    if len(passage) < 32:
        return None
    text = _ask(render_chat, cfg.rewrite_prompt.format(text=passage))
    return Prompt("rewrite", "text", (src.id,), text, original=passage, context={"prefix": ""})


def _chat_rewrite(src: Source, render_chat: Callable[[list[dict[str, str]]], str]) -> Prompt | None:
    try:
        messages = json.loads(src.content)["messages"]
    except (ValueError, KeyError, TypeError):
        return None
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    return Prompt(
        "rewrite",
        "chat",
        (src.id,),
        render_chat(messages[:last]),
        original=messages[last]["content"],
        context={"messages": messages[:last], "after": messages[last + 1 :]},
    )


def synthesize_prompts(
    sources: Sequence[Source],
    count: int,
    cfg: ReworkConfig,
    rng: random.Random,
    seed_chars: int = 80,
    *,
    render_chat: Callable[[list[dict[str, str]]], str] | None = None,
) -> list[Prompt]:
    """Prompts for new samples.

    Without ``render_chat`` (prefix mode): a short seed (the opening of a training document),
    free continuation. With it (instruction mode): ``synthesize_prompt`` asks for a question
    that a passage of a training document answers and its answer (Self-Instruct style); the
    reply becomes a user/assistant chat record. The text-quality and dedup judges decide.
    """
    n_prompts = max(0, -(-count // cfg.samples_per_prompt))
    texts = [s for s in sources if s.kind == "text" and len(s.content) > seed_chars // 2]
    if not texts or not n_prompts:
        return []
    prompts = []
    for _ in range(n_prompts):
        src = texts[rng.randrange(len(texts))]
        if render_chat is not None:
            passage = _passage(src.content, int(cfg.max_new_tokens * CHARS_PER_TOKEN * 2), rng)
            text = _ask(render_chat, cfg.synthesize_prompt.format(text=passage))
            prompts.append(Prompt("synthesize", "qa", (src.id,), text, context={"passage": passage}))
            continue
        seed = src.content[: _cut_at_space(src.content, seed_chars // 2)].rstrip()
        prompts.append(Prompt("synthesize", "text", (src.id,), seed, context={"prefix": seed}))
    return prompts


_QA = re.compile(
    r"^[*_#\s]*question[*_\s]*:[*_\s]*(?P<q>.+?)\s*[*_#\s]*answer[*_\s]*:[*_\s]*(?P<a>.+)$", re.IGNORECASE | re.DOTALL
)


def parse_qa(completion: str) -> tuple[str, str] | None:
    """``Question: ... Answer: ...`` -> (question, answer); None when the reply is not in that form."""
    m = _QA.match(completion.strip())
    if not m or not m.group("q").strip() or not m.group("a").strip():
        return None
    return m.group("q").strip(), m.group("a").strip()


def assemble(prompt: Prompt, completion: str) -> Draft | None:
    """Turn one sample into a draft candidate; None for a question/answer reply not in that form."""
    if prompt.kind == "qa":
        qa = parse_qa(completion)
        if qa is None:
            return None
        messages = [{"role": "user", "content": qa[0]}, {"role": "assistant", "content": qa[1]}]
        content = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
        return Draft(prompt.strategy, "chat", prompt.source_ids, content, prompt.text, completion.strip(), None)
    if prompt.kind == "chat":
        messages = [
            *prompt.context["messages"],
            {"role": "assistant", "content": completion.strip()},
            *prompt.context["after"],
        ]
        content = json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)
        return Draft(
            prompt.strategy, "chat", prompt.source_ids, content, prompt.text, completion.strip(), prompt.original
        )
    prefix = prompt.context.get("prefix", "")
    return Draft(
        prompt.strategy, "text", prompt.source_ids, prefix + completion, prompt.text, completion, prompt.original
    )
