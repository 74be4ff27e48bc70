"""The pairwise judge asks a local judge model twice, positions swapped; B wins only if it wins both."""

from __future__ import annotations

import pytest
from fake_endpoint import chat_answer, fake_endpoint

from selfloop.config import JudgeConfig
from selfloop.errors import ConfigError
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.judge.pairwise import parse_choice

PROMPT = "The quiet river runs past"
GOOD, BAD = " the old mill and the green fields.", " nothing nothing nothing."


@pytest.fixture
def judge_server():
    """A fake chat endpoint; ``policy`` maps (response 1, response 2) to the answer it gives."""
    state = {"policy": lambda one, two: "1", "asked": []}

    def respond(body):
        question = body["messages"][-1]["content"]
        one = question.split("Response 1:")[1].split("Response 2:")[0].strip()
        two = question.split("Response 2:")[1].split("\n\n")[0].strip()
        state["asked"].append((body, one, two))
        return chat_answer(state["policy"](one, two))

    with fake_endpoint(respond) as (url, _):
        yield url, state


def _pipe(url: str, **cfg) -> Pipeline:
    return Pipeline(JudgeContext(JudgeConfig(text=["pairwise"], external_url=url, **cfg)), kinds=["text"])


def _cand(a: str | None, b: str) -> Candidate:
    return Candidate("text", PROMPT + b, source=a, metadata={"prompt": PROMPT, "completion": b})


def test_b_wins_only_when_preferred_in_both_orders(judge_server):
    url, state = judge_server
    state["policy"] = lambda one, two: "1" if "mill" in one else "2"  # a fair judge that likes the mill
    win, lose = _pipe(url).judge_batch([_cand(BAD, GOOD), _cand(GOOD, BAD)])
    assert win.accepted and win.verdicts[0].score == 1.0
    assert win.verdicts[0].detail == {"a_first": "2", "b_first": "1"}
    assert not lose.accepted and "A preferred in 2 of 2 orders" in lose.reason
    asked = state["asked"]
    assert len(asked) == 4 and (asked[0][1], asked[0][2]) == (BAD.strip(), GOOD.strip())  # A first, then B first
    assert (asked[1][1], asked[1][2]) == (GOOD.strip(), BAD.strip())
    body = asked[0][0]
    assert body["temperature"] == 0 and body["model"] == "judge" and body["messages"][0]["role"] == "system"


def test_position_bias_ties_and_silence_reject(judge_server):
    url, state = judge_server
    state["policy"] = lambda one, two: "Response 1."  # always the first position
    split = _pipe(url).judge(_cand(BAD, GOOD))
    assert not split.accepted and "split decision" in split.reason
    state["policy"] = lambda one, two: "Tie"
    tie = _pipe(url).judge(_cand(BAD, GOOD))
    assert not tie.accepted and "tie" in tie.reason
    assert _pipe(url).judge(_cand(None, GOOD)).accepted  # nothing to compare: synthesis
    down = _pipe("http://127.0.0.1:9").judge(_cand(BAD, GOOD))
    assert not down.accepted and down.reason.startswith("pairwise: judge_unavailable")


def test_prompts_come_from_config_and_must_show_both_responses(judge_server):
    url, state = judge_server
    state["policy"] = lambda one, two: "2"
    custom = "Judge these.\nText: {prompt}\n\nResponse 1: {first}\n\nResponse 2: {second}\n\nAnswer 1, 2 or tie."
    _pipe(url, pairwise_prompt=custom, pairwise_system="", pairwise_model="qwen").judge(_cand(BAD, GOOD))
    body = state["asked"][-1][0]
    assert body["messages"][0]["content"].startswith("Judge these.") and body["model"] == "qwen"
    assert len(body["messages"]) == 1  # no system prompt when it is empty
    with pytest.raises(ValueError, match="both responses"):
        JudgeConfig(pairwise_prompt="{prompt} {first}")
    with pytest.raises(ValueError, match="only"):
        JudgeConfig(pairwise_prompt="{first} {second} {other}")
    with pytest.raises(ConfigError, match="localhost"):
        _pipe("http://example.com:8000")


def test_parse_choice():
    assert [parse_choice(a) for a in ["1", "2.", "Response 2", "tie", "TIE!", "B", ""]] == [
        "1",
        "2",
        "2",
        "tie",
        "?",
        "?",
        "?",
    ]
