"""The Gopher / C4 / FineWeb rules (datatrove's filters, one check each), their calibration on orig/, and the
doc_quality judge."""

from __future__ import annotations

import json

import pytest

from selfloop.config import DOC_RULES, IngestConfig, JudgeConfig, WatchConfig
from selfloop.ingest.ingestor import Ingestor
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.judge.doc_rules import calibrate, first_failure, load_calibration, rule
from selfloop.store import Store
from selfloop.testing import make_project, tiny_config

CLEAN = (
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings. "
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread. "
    "By noon the town was busy with traders, and the smell of the sea drifted through the narrow streets. "
    "In the evening the keeper climbed the tower to light the lamp, as he had done for many years."
)


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("gopher_stop_words", " ".join(["harbor boats gull market baker bread tower lamp keeper street"] * 6), "stop"),
        ("gopher_alpha_words", "12 + 34 = 46 ; 7 * 8 = 56 ; 9 - 3 = 6 ; x = 1", "alpha"),
        ("gopher_word_length", "a b c d e f g h i j k l m n o p", "below_avg"),
        ("gopher_symbols", "# one # two # three # four # five", "hashes"),
        ("gopher_lines", "- one\n- two\n- three\n- four", "bullets"),
        ("gopher_repetition", "\n".join(["The lamp is lit at dusk by the keeper."] * 8), "dup_"),
        ("gopher_top_ngrams", " ".join(["the lamp is lit"] * 20), "top_"),
        ("c4_sentences", "no sentence here at all\nnor here either", "too_few_sentences"),
        ("fineweb_line_punct", "a line without an end\nanother one\nand a third\nstill none", "line_punct"),
        ("fineweb_newlines", "The daemon is" + "\n" * 200 + "here.", "list_ratio"),
        ("fineweb_short_lines", "Short.\nLines.\nOnly.\nHere.", "short_line"),
    ],
)
def test_each_rule_drops_its_kind_of_text_with_datatroves_reason(name, text, reason):
    why = rule(name)(text)
    assert why is not None and reason in why
    assert rule(name)(CLEAN) is None


def test_gopher_count_rules_wait_for_fifty_words_and_no_words_is_a_reason():
    assert rule("gopher_stop_words")("harbor boats gull market") is None  # too short to count stop words
    assert rule("gopher_top_ngrams")("set the lamp on the sill") is None
    assert rule("c4_sentences")("   \n ") == "no_words"
    assert first_failure(CLEAN, DOC_RULES) is None
    assert first_failure("a b c d e f g", ["c4_sentences", "gopher_word_length"])[0] == "c4_sentences"


def test_calibration_turns_off_a_rule_that_would_gut_the_users_corpus():
    terse = ["x = 1 + 2", "y = 3 * 4", "z = x - y", CLEAN]  # 3 of 4 have no letters in most words
    cal = calibrate({"text": terse, "chat": []}, ["gopher_alpha_words", "c4_sentences"], 0.5)
    assert cal.documents == {"text": 4}
    assert cal.drop_share["text"]["gopher_alpha_words"] == 0.75
    assert cal.active("text", ["gopher_alpha_words", "c4_sentences"]) == []  # c4: 3 of 4 lack a sentence too
    assert ("text", "gopher_alpha_words", 0.75) in cal.too_strict()
    assert cal.active("chat", ["gopher_alpha_words"]) == ["gopher_alpha_words"]  # no chat documents measured


def _chat(answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": "Say it."}, {"role": "assistant", "content": answer}]})


def test_calibration_is_measured_on_orig_per_kind_and_cached(tmp_path):
    _, cfg, paths = make_project(tmp_path, tiny_config())
    (paths.orig / "story.txt").write_text(CLEAN + "\n")
    answers = [f"{a} + {b} = {a + b}. Adding {b} to {a} gives {a + b}." for a in range(10, 13) for b in range(5)]
    (paths.orig / "math.jsonl").write_text("".join(_chat(a) + "\n" for a in answers))
    jc = JudgeConfig(doc_rules_max_orig_drop=0.2)
    with Store.open(paths.db) as store:
        Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
        cal = load_calibration(jc, paths, store)
        files = list((paths.state / "judge").glob("calibration-*.json"))
        assert len(files) == 1 and cal.fingerprint in files[0].name
        assert load_calibration(jc, paths, store).drop_share == cal.drop_share
    assert "gopher_alpha_words" not in cal.active("chat", jc.doc_rules)  # sums are not words
    assert "gopher_alpha_words" in cal.active("text", jc.doc_rules)
    assert any(k == "chat" and r == "gopher_alpha_words" for k, r, _ in cal.too_strict())

    # The judge applies the calibrated rules: sums pass as chat, and prose rules still hold text.
    ctx = JudgeContext(JudgeConfig(text=["doc_quality"], chat=["doc_quality"]), resources={"doc_calibration": cal})
    pipe = Pipeline(ctx, kinds=["text", "chat"])
    sums = pipe.judge(Candidate("chat", _chat("13 + 14 = 27. Adding 14 to 13 gives 27.")))
    assert sums.accepted, sums.reason
    out = pipe.judge(Candidate("text", "12 + 34 = 46 ; 7 * 8 = 56 ; 9 - 3 = 6 ; x = 1 ; y = 2 ; z = 3"))
    assert not out.accepted and out.reason.startswith("doc_quality: ")


def test_doc_quality_without_calibration_applies_every_configured_rule():
    pipe = Pipeline(JudgeContext(JudgeConfig(text=["doc_quality"])), kinds=["text"])
    assert pipe.judge(Candidate("text", CLEAN)).accepted
    out = pipe.judge(Candidate("text", "The daemon is" + "\n" * 200))
    assert not out.accepted and out.reason.split(": ")[1] in DOC_RULES
