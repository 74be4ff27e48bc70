"""Judge sets: parsing items, turning them into candidates, and precision / recall / F1 per judge and pipeline."""

from __future__ import annotations

import json

import pytest

from selfloop.config import JudgeConfig
from selfloop.errors import UsageError
from selfloop.judge import JudgeContext, Pipeline
from selfloop.judge.evaluate import Counts, Item, candidate, evaluate, judge_items, parse_items
from selfloop.judge.reference import build_ngram

PROSE = [
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings.",
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread.",
    "The old lighthouse keeper climbed the stairs each evening to light the lamp before the sun went down.",
    "Children ran along the beach, and their parents watched them from the benches by the sea wall.",
]


def test_parse_items_names_the_line_and_the_problem():
    lines = [
        json.dumps({"kind": "text", "prompt": "p ", "a": None, "b": "x"}),
        "",
        json.dumps({"kind": "chat", "prompt": "q", "a": "y", "b": "z", "label": "good", "why": "typos"}),
    ]
    items = parse_items(lines)
    assert items[0] == Item("text", "p ", None, "x") and items[1].why == "typos"
    with pytest.raises(UsageError, match=r"f.jsonl:1: 'label' must be one of good, bad"):
        parse_items(lines[:1], where="f.jsonl", labelled=True)
    for bad, msg in [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"kind": "code", "b": "x"}), "kind 'code'"),
        (json.dumps({"prompt": "p", "b": 3}), "must be strings"),
    ]:
        with pytest.raises(UsageError, match=msg):
            parse_items([bad])


def test_candidates_carry_prompt_original_and_completion():
    text = candidate(Item("text", "Once ", "upon a time.", "there was a king."))
    assert (text.content, text.source, text.metadata["completion"]) == (
        "Once there was a king.",
        "upon a time.",
        "there was a king.",
    )
    chat = candidate(Item("chat", "Hello?", None, "Hi."))
    assert json.loads(chat.content)["messages"][1] == {"role": "assistant", "content": "Hi."}
    assert chat.source is None and chat.metadata["prompt"] == "Hello?\n"


def test_counts_precision_recall_f1():
    c = Counts()
    for accepted, good in [(True, True), (True, True), (True, False), (False, True), (False, False)]:
        c.add(accepted, good)
    assert (c.precision, c.recall) == (2 / 3, 2 / 3) and c.f1 == pytest.approx(2 / 3)
    assert Counts().precision is None and Counts().f1 is None
    d = c.as_dict()
    assert d["good_accepted"] == "2/3" and d["bad_accepted"] == "1/2"


def test_evaluate_measures_the_pipeline_and_each_judge_alone():
    ref = build_ngram(list(enumerate(PROSE * 4)), order=3, vocab_size=300, folds=2)
    cfg = JudgeConfig(text=["doc_quality", "a_vs_b"], ab_scorers=["fluency"])
    pipe = Pipeline(JudgeContext(cfg, resources={"reference": ref}), kinds=["text"])
    prompt = "Early in the day "
    clean = "the fishing boats rocked gently at their moorings, and the baker set out fresh bread."
    items = [
        Item(
            "text",
            prompt,
            clean,
            "boats the rocked moorings at fishing gently their, bread baker the set.",
            "bad",
            "shuffled",
        ),
        Item("text", prompt, clean, "the\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", "bad", "newline_flood"),
        Item(
            "text",
            prompt,
            "teh fsihing boast rokced gnetly at thier moornigs, adn teh bkaer set otu fersh breda.",
            clean,
            "good",
            "typos",
        ),
    ]
    report = evaluate(pipe, items)
    assert report.items == 3
    assert (report.pipeline.tp, report.pipeline.fp) == (1, 0)
    assert set(report.judges) == {"doc_quality", "a_vs_b"}
    # Each judge saw every item, even those an earlier judge rejected.
    assert all(c.tp + c.fp + c.fn + c.tn == 3 for c in report.judges.values())
    d = report.as_dict()
    rates = {(r["label"], r["why"]): r["rate"] for r in d["accept_rate_by_why"]}
    assert rates == {("bad", "newline_flood"): 0.0, ("bad", "shuffled"): 0.0, ("good", "typos"): 1.0}
    assert d["judge_by_why"]["a_vs_b"]["good/typos"] == [1, 1]
    assert [o.accepted for o in judge_items(pipe, items)] == [False, False, True]
