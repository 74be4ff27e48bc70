"""Pure units of the corpus pipeline: normalize, decode, filters, formats, task records, split, MinHash."""

from __future__ import annotations

import codecs
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfloop.config import IngestConfig
from selfloop.corpus import filters
from selfloop.corpus.decode import decode
from selfloop.corpus.dedup import (
    NearDupIndex,
    _words,
    from_bytes,
    lsh_bands,
    shingle_hashes,
    shingle_tokens,
    signature,
    to_bytes,
)
from selfloop.corpus.formats import ChatRecord, Rejected, TaskItem, TextRecord, json_depth, parse
from selfloop.corpus.normalize import control_ratio, normalize
from selfloop.corpus.pipeline import prepare, quality_check
from selfloop.records import Reason, TaskRecord, code_of, split_of

CFG = IngestConfig()
PROSE = (
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings. "
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread."
)

# About 150 distinct words: one changed word keeps the MinHash Jaccard well above 0.85.
LONG = PROSE + (
    " Children walked to school along the sea wall, counting the ships that waited outside the breakwater. "
    "By noon the tide had turned, the nets were mended, and the old lighthouse keeper told stories of storms "
    "that had flattened the dunes long before anyone in the village could remember. Visitors from the city "
    "bought smoked fish, postcards and woollen hats, then hurried back to the station before the last train. "
    "In the evening lamps were lit in every window, music drifted out of the tavern, and the church clock "
    "struck nine while the fishermen checked the weather for tomorrow and went to bed early."
)


def parse_all(text: str, fmt: str, chunk_chars: int = 2000) -> list:
    return list(parse(text, fmt, chunk_chars=chunk_chars, max_json_depth=CFG.max_json_depth))


# ----------------------------------------------------------------- normalize


def test_normalize_nfc_newlines_controls_trailing_blank_runs():
    raw = "\ufeffCafe\u0301 one  \r\nzero\u200bwidth\x07 bell\t\r\n\n\n\n\n\nend \n\n"
    assert normalize(raw) == "Caf\u00e9 one\nzerowidth bell\n\n\nend"


def test_normalize_keeps_indentation_and_tabs():
    assert normalize("def f():\n\treturn 1\n    x = 2") == "def f():\n\treturn 1\n    x = 2"


# ----------------------------------------------------------------- decode


def test_decode_utf8_with_and_without_bom():
    assert decode("h\u00e9llo".encode(), 0.01) == "h\u00e9llo"
    assert decode(codecs.BOM_UTF8 + "h\u00e9llo".encode(), 0.01) == "h\u00e9llo"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_decode_utf16_utf32_with_bom(encoding):
    boms = {"utf-16-be": codecs.BOM_UTF16_BE}
    data = boms.get(encoding, b"") + "na\u00efve \u00fcber text".encode(encoding)
    assert decode(data, 0.01) == "na\u00efve \u00fcber text"


def test_decode_refuses_latin1_binary_and_controls():
    bad = decode("caf\u00e9".encode("latin-1"), 0.01)
    assert isinstance(bad, Reason) and bad.code == "not_utf8" and "byte 3" in bad.detail
    nul = decode(b"abc\x00def", 0.01)
    assert nul.code == "binary" and nul.detail.startswith("NUL byte at offset 3; ") and "watch.ignore" in nul.detail
    ctl = decode(b"text" + b"\x01\x02\x03" * 10, 0.01)
    assert isinstance(ctl, Reason) and ctl.code == "binary" and "control characters" in ctl.detail


# ----------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("text", "code", "detail_part"),
    [
        ("   \n  ", "empty", "no visible"),
        ("tiny text", "too_short", "9 chars < min_chars 32"),
        ("word " * 30_000, "too_long", "> max_chars 100000"),
        ("#$%^&*(){}[]<>?/|\\~`!@ " * 5 + "abc", "symbol_ratio", "> max_symbol_ratio 35%"),
        ("\n".join(["buy cheap pills now"] * 6 + ["a different line of text"] * 2), "dup_line_fraction", "x6"),
        ("click here now " * 20, "top_ngram_fraction", "x20"),
    ],
)
def test_each_filter_drops_with_reason(text, code, detail_part):
    reason = filters.first_failure(text, CFG)
    assert reason is not None and reason.code == code, reason
    assert detail_part in reason.detail
    assert code_of(str(reason)) == code


def test_filters_keep_prose_and_python():
    assert filters.first_failure(PROSE, CFG) is None
    code = "def add(a, b):\n    '''Add two numbers.'''\n    return a + b\n\n\nprint(add(1, 2))\n"
    assert filters.first_failure(code, CFG) is None


def test_non_text_filter_on_raw_text():
    assert filters.non_text(PROSE, CFG) is None
    reason = filters.non_text(PROSE + "\x01" * 20, CFG)
    assert reason is not None and reason.code == "non_text"


def test_symbol_ratio_counts_unicode_spaces_as_space_and_underscores_as_word():
    strict = IngestConfig(max_symbol_ratio=0.1)
    # visible: "a_b" "c!" (no-break and em spaces are whitespace) -> 1 symbol of 5
    reason = filters.symbol_ratio("a_b\u00a0c!\u2003", strict)
    assert reason is not None and reason.detail.startswith("symbols are 20% of visible chars")
    # the same in ASCII (its own fast path): \x1c-\x1f are whitespace to str.isspace and the re module
    reason = filters.symbol_ratio("a_b\x1fc!\t", strict)
    assert reason is not None and reason.detail.startswith("symbols are 20% of visible chars")
    assert filters.symbol_ratio("snake_case_name\u3000other_name", strict) is None
    assert filters.symbol_ratio(" \u00a0\n", strict) is None


def test_top_ngram_fraction_frequent_word_without_repeated_ngram_is_kept():
    # "the" covers a large share, but no 3-gram occurs twice: kept
    text = " ".join(f"the w{i}" for i in range(40))
    assert filters.top_ngram_fraction(text, IngestConfig(max_top_ngram_fraction=0.1)) is None
    # the same word share as one repeated 3-gram: dropped with its figures
    spam = " ".join(["the cat sat"] * 10 + [f"w{i}" for i in range(30)])
    reason = filters.top_ngram_fraction(spam, IngestConfig(max_top_ngram_fraction=0.3))
    assert reason is not None and "'the cat sat' x10 covers 53%" in reason.detail


def test_short_chat_echoing_its_question_is_not_repetition():
    assert (
        filters.top_ngram_fraction('Write "apple" in capital letters.\n"apple" in capital letters is "APPLE".', CFG)
        is None
    )


def test_quality_check_for_generated_text():
    assert quality_check(PROSE, CFG) == (True, None)
    keep, reason = quality_check("ok", CFG)
    assert not keep and reason == "too_short: 2 chars < min_chars 32"


# ----------------------------------------------------------------- formats: text


def test_short_text_is_one_document():
    [rec] = parse_all(PROSE, "text")
    assert rec == TextRecord("chunk 1 (lines 1-1)", PROSE)


def test_long_text_splits_at_blank_lines_near_chunk_chars():
    paras = [f"Paragraph {i}. " + PROSE for i in range(12)]
    recs = parse_all("\n\n".join(paras), "text", chunk_chars=700)
    assert len(recs) > 3
    assert all(len(r.text) <= 700 for r in recs)
    # nothing lost, nothing cut mid-paragraph
    assert [p for r in recs for p in r.text.split("\n\n")] == paras
    assert recs[1].locator.startswith("chunk 2 (lines ")


def test_markdown_code_fence_is_not_split():
    fence = "```python\n" + "\n\n".join(f"x{i} = {i}  # " + "pad " * 20 for i in range(8)) + "\n```"
    doc = "# Title\n\nIntro text.\n\n" + fence + "\n\nAfter."
    recs = parse_all(doc, "md", chunk_chars=200)
    assert any(r.text.startswith("```python") and r.text.endswith("```") for r in recs)


def test_python_splits_at_top_level_defs_with_comments_and_decorators():
    body = "    return {}\n".format("1") + "".join(f"    # padding line {j}\n" for j in range(8))
    src = (
        '"""Module doc."""\nimport os\n\n\n# helper comment\n@decorator\ndef a():\n'
        + body
        + "\n\nclass B:\n"
        + body
        + "\n\ndef c():\n"
        + body
    )
    recs = parse_all(src, "py", chunk_chars=200)
    texts = [r.text for r in recs]
    assert texts[0].startswith('"""Module doc."""')
    assert any(t.startswith("# helper comment\n@decorator\ndef a():") for t in texts)
    assert any(t.startswith("class B:") for t in texts)
    # nothing lost: every non-blank line appears once, in order
    assert [ln for t in texts for ln in t.split("\n") if ln.strip()] == [ln for ln in src.split("\n") if ln.strip()]


def test_python_that_does_not_parse_is_chunked_as_text():
    src = "def broken(:\n    pass\n\n" + "\n\n".join(PROSE for _ in range(3))
    recs = parse_all(src, "py", chunk_chars=300)
    assert recs and all(isinstance(r, TextRecord) for r in recs)


# ----------------------------------------------------------------- formats: JSONL


def test_jsonl_records_and_rejects_with_line_numbers():
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ]
    }
    task = {"id": "a1", "family": "arith", "difficulty": 1, "prompt": "What is 2+2?", "answer": "4"}
    lines = [
        json.dumps({"text": PROSE, "source": "metadata is allowed"}),  # 1
        "",  # 2 blank: skipped silently
        "{not json",  # 3
        json.dumps([1, 2]),  # 4
        json.dumps({"text": 5}),  # 5
        json.dumps({"title": "no text"}),  # 6
        json.dumps(chat),  # 7
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),  # 8 no assistant
        json.dumps({"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}),  # 9
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "system", "content": "late"},
                    {"role": "assistant", "content": "b"},
                ]
            }
        ),  # 10
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}),  # 11
        json.dumps(task),  # 12
        json.dumps({**task, "answer": None}),  # 13 not verifiable
        json.dumps({**task, "difficulty": -1}),  # 14
        json.dumps({**task, "extra": 1}),  # 15
        '{"text": "x", "meta": ' + "[" * 20 + "]" * 20 + "}",  # 16
        "[" * 100_000,  # 17 deeper than the parser goes
    ]
    recs = parse_all("\n".join(lines), "jsonl")
    by_line = {r.locator: r for r in recs}
    assert "line 2" not in by_line
    assert by_line["line 1"] == TextRecord("line 1", PROSE)
    assert isinstance(by_line["line 7"], ChatRecord) and by_line["line 7"].messages[-1] == ("assistant", "4")
    assert isinstance(by_line["line 12"], TaskItem) and by_line["line 12"].task.family == "arith"
    expected = {
        "line 3": "invalid_json",
        "line 4": "wrong_type",
        "line 5": "wrong_type",
        "line 6": "missing_field",
        "line 8": "invalid_chat",
        "line 9": "invalid_chat",
        "line 10": "invalid_chat",
        "line 11": "invalid_chat",
        "line 13": "invalid_task",
        "line 14": "invalid_task",
        "line 15": "invalid_task",
        "line 16": "too_deep",
        "line 17": "too_deep",
    }
    for loc, code in expected.items():
        rec = by_line[loc]
        assert isinstance(rec, Rejected) and rec.reason.code == code, (loc, rec)
    assert "no assistant turn" in by_line["line 8"].reason.detail
    assert "messages.0.role" in by_line["line 9"].reason.detail
    assert "at least one of checker, tests or answer" in by_line["line 13"].reason.detail
    assert by_line["line 3"].raw == "{not json"


def test_json_depth():
    assert json_depth(1) == 0 and json_depth({"a": [1]}) == 2 and json_depth([[[]]]) == 3


def test_task_record_is_strict_and_canonical():
    t = TaskRecord(id="1", family="f", difficulty=0, prompt="p", tests="assert f() == 1")
    assert json.loads(t.canonical_json()) == {
        "id": "1",
        "family": "f",
        "difficulty": 0,
        "prompt": "p",
        "tests": "assert f() == 1",
    }
    assert t.split_key == "task/f/0/1"
    with pytest.raises(ValueError):
        TaskRecord(id="1", family="f", difficulty=0, prompt="p")


def test_prepare_chat_is_canonical_json_and_filtered_on_contents():
    p = prepare(
        ChatRecord(
            "line 1", (("user", "What is  the capital of France?  "), ("assistant", "Paris is the capital of France."))
        ),
        CFG,
    )
    assert p.kind == "chat" and p.drop is None
    assert json.loads(p.content) == {
        "messages": [
            {"role": "user", "content": "What is  the capital of France?"},
            {"role": "assistant", "content": "Paris is the capital of France."},
        ]
    }
    short = prepare(ChatRecord("line 2", (("user", "2+2?"), ("assistant", "4"))), CFG)
    assert short.drop is not None and short.drop.code == "too_short"


# ----------------------------------------------------------------- split and MinHash


def test_split_is_a_pure_function_of_the_key():
    keys = [f"doc {i}" for i in range(2000)]
    first = [split_of(k, 0.1) for k in keys]
    assert first == [split_of(k, 0.1) for k in keys]
    share = first.count("heldout") / len(first)
    assert 0.07 < share < 0.13
    assert all(split_of(k, 0.0) == "train" for k in keys[:50])


def test_minhash_roundtrip_and_near_match():
    a = signature(LONG, num_perm=128, shingle_words=5)
    assert from_bytes(to_bytes(a), 128).jaccard(a) == 1.0
    index = NearDupIndex(threshold=0.8, num_perm=128)
    index.add(7, a)
    close = signature(LONG.replace("gull", "seagull"), num_perm=128, shingle_words=5)
    far = signature(
        "An entirely different sentence about mountains, rivers and the weather in spring.",
        num_perm=128,
        shingle_words=5,
    )
    match = index.best_match(close)
    assert match is not None and match[0] == 7 and match[1] >= 0.8
    assert index.best_match(far) is None
    index.remove(7)
    assert index.best_match(close) is None and len(index) == 0


def test_lsh_bands_divide_the_signature_and_favour_recall():
    # rensa bands a signature in equal parts; 16 x 8 finds 99% of pairs at J = 0.85 as candidates
    assert lsh_bands(0.85, 128) == 16
    for perm in (16, 17, 100, 128, 256):
        for threshold in (0.5, 0.85, 0.95):
            assert perm % lsh_bands(threshold, perm) == 0
    assert lsh_bands(0.5, 128) > lsh_bands(0.95, 128)  # a lower threshold needs shorter bands


def test_shingle_hashes_follow_words_not_case_or_punctuation():
    assert (
        shingle_hashes("The quick brown fox jumps over", 5).tolist()
        == shingle_hashes("the QUICK, brown -- fox jumps over!", 5).tolist()
    )
    assert len(shingle_hashes("one two three four five six seven", 5)) == 3
    assert (
        shingle_hashes("one two three four five", 5).tolist() != shingle_hashes("five four three two one", 5).tolist()
    )
    # a text of at most n words is one shingle of all of them; an empty text, one shingle of none
    assert len(shingle_hashes("just three words", 5)) == 1
    assert shingle_hashes("just three words", 5).tolist() != shingle_hashes("just three", 5).tolist()
    assert len(shingle_hashes("", 5)) == 1 and len(shingle_hashes("?!", 5)) == 1


def test_ascii_and_unicode_texts_split_into_the_same_words():
    # ASCII text takes a byte-translate fast path, other text the \\w+ regex: same words, same hashes.
    ascii_text = "Tab\there: snake_case, 42 foo-bar's {x}\n\x0b\x1fEnd!"
    assert shingle_hashes(ascii_text, 1).tolist() == shingle_hashes(ascii_text + " \u00e9t\u00e9", 1).tolist()[:-1]
    assert len(shingle_hashes(ascii_text, 1)) == 9


def test_signature_is_the_same_in_every_process():
    # Stored signatures are compared across restarts: no per-process salt (PYTHONHASHSEED) may enter.
    here = to_bytes(signature(LONG, num_perm=128, shingle_words=5)).hex()
    code = (
        "import sys; from selfloop.corpus.dedup import signature, to_bytes; "
        "print(to_bytes(signature(sys.argv[1], num_perm=128, shingle_words=5)).hex())"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, LONG],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == here


# Byte-level fast paths must count and split exactly as the regular expressions they replace,
# on any text: ASCII, other scripts, Unicode spaces and punctuation, combining marks, lone surrogates.
_TEXTS = st.text(
    st.one_of(
        st.characters(max_codepoint=0x7F),
        st.characters(),
        st.sampled_from("\u2019\u201c\u2014\u00a0\u3000\u2028\x85\x1c\u0130\u0307\u00b2\u200b\ufeff\ud800_"),
    )
)


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_byte_level_counts_and_words_match_the_regexes(text):
    assert _words(text) == [w.encode("utf-8", "surrogatepass") for w in re.findall(r"\w+", text.lower())]
    assert filters._visible_and_symbols(text) == (sum(map(len, text.split())), len(re.findall(r"[^\w\s]", text)))
    expected = len(re.findall("[\x00-\x08\x0b\x0e-\x1f\x7f]", text)) / len(text) if text else 0.0
    assert control_ratio(text) == expected


_WORDY = st.lists(st.sampled_from(["alpha", "Beta", "gamma,", "delta.", "\u00e9t\u00e9", "--", "x"]), max_size=14).map(
    " ".join
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_WORDY, max_size=8), st.integers(1, 6))
def test_a_file_s_shingles_at_once_are_each_text_s_own(texts, n):
    # Batched over a file's documents (texts shorter than n, empty and of exactly n words among them).
    assert shingle_tokens(texts, n) == [shingle_hashes(t, n).astype("<u8").view("S8").tolist() for t in texts]
