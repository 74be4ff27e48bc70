"""Readers of the corpus: text by content, HTML, compressed files, and the common JSON record shapes."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import tarfile

import zstandard

from selfloop.config import DEFAULT_READERS
from selfloop.corpus.decode import decode, decompress
from selfloop.corpus.formats import (
    ChatRecord,
    Rejected,
    TextRecord,
    html_to_markdown,
    json_record,
    looks_like_html,
    parse,
    reader_for,
)
from selfloop.records import Reason

PROSE = "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings."


def records(text: str, fmt: str, **fields: str):
    return parse(text, fmt, chunk_chars=2000, max_json_depth=16, fields=fields)


def test_reader_by_suffix_after_compression_else_text():
    assert reader_for("data.JSONL.gz", DEFAULT_READERS) == "jsonl"
    assert reader_for("page.htm.zst", DEFAULT_READERS) == "html"
    for name in ("GPL-3", "README", "LICENSE", "notes.rst", "paper.tex", "run.log", "v1.2", "x.txt.bz2"):
        assert reader_for(name, DEFAULT_READERS) == "text", name


def test_chat_messages_with_tool_turns_and_extra_keys():
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    rec = {
        "id": 7,
        "messages": [
            {"role": "system", "content": "You add.", "weight": 0},
            {"role": "user", "content": "1+2?", "name": "ann"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "3", "tool_call_id": "c1"},
            {"role": "assistant", "content": [{"type": "text", "text": "It is 3."}], "weight": 1},
        ],
    }
    turns = json_record(rec, {})
    assert [r for r, _ in turns] == ["system", "user", "assistant", "tool", "assistant"]
    assert json.loads(turns[2][1]) == call["function"] and turns[4][1] == "It is 3."


def test_trl_alpaca_sharegpt_and_text_shapes():
    trl = json_record({"prompt": "Capital of France?", "completion": "Paris.", "source": "x"}, {})
    assert trl == (("user", "Capital of France?"), ("assistant", "Paris."))
    conversational = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": "Hello!"}],
    }
    assert json_record(conversational, {}) == (("user", "Hi"), ("assistant", "Hello!"))
    alpaca = {"instruction": "Translate.", "input": "chat", "output": "cat", "system": "Be brief.", "id": 1}
    assert json_record(alpaca, {}) == (("system", "Be brief."), ("user", "Translate.\n\nchat"), ("assistant", "cat"))
    assert json_record({"instruction": "Say hi.", "input": "", "output": "hi"}, {})[0] == ("user", "Say hi.")
    sharegpt = {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}], "lang": "en"}
    assert json_record(sharegpt, {}) == (("user", "2+2?"), ("assistant", "4"))
    assert json_record({"text": PROSE, "url": "u", "meta": {"a": 1}}, {}) == PROSE


def test_field_mapping_and_the_reason_for_an_unknown_shape():
    rec = {"question": "Capital of Italy?", "answer": "Rome."}
    refused = json_record(rec, {})
    assert isinstance(refused, Reason) and refused.code == "missing_field"
    assert "answer, question" in refused.detail and "[ingest.json_fields]" in refused.detail
    mapped = json_record(rec, {"question": "prompt", "answer": "completion"})
    assert mapped == (("user", "Capital of Italy?"), ("assistant", "Rome."))


def test_json_file_array_one_record_or_lines():
    rows = [{"text": PROSE}, {"messages": [{"role": "user", "content": "a"}]}, {"prompt": "p", "completion": "c"}]
    got = records(json.dumps(rows, indent=2), "json")
    assert got[0] == TextRecord("record 1", PROSE)
    assert isinstance(got[1], Rejected) and got[1].locator == "record 2" and got[1].reason.code == "invalid_chat"
    assert isinstance(got[2], ChatRecord) and got[2].locator == "record 3"
    assert records(json.dumps({"text": PROSE}), "json") == [TextRecord("record 1", PROSE)]
    lines = "\n".join(json.dumps(r) for r in rows)  # what datasets' Dataset.to_json writes
    assert [r.locator for r in records(lines, "json")] == ["line 1", "line 2", "line 3"]


def test_json_that_holds_no_records_says_how_to_use_it():
    package = records(json.dumps({"name": "x", "version": "1.0", "dependencies": {}}), "json")
    assert isinstance(package, Reason) and package.code == "unsupported_json"
    assert "[ingest.json_fields]" in package.detail and ".txt" in package.detail
    assert records("3", "json").code == "unsupported_json"
    assert records("{broken", "json").code == "invalid_json"


def test_html_is_converted_to_markdown_without_page_chrome():
    page = (
        "<!DOCTYPE html><html><head><title>Menu</title><style>p{color:red}</style></head><body>"
        '<nav><a href="/">Home</a></nav><script>var tracking = 1;</script>'
        "<h1>Tides &amp; boats</h1><p>The <b>harbor</b> was <a href='/q'>quiet</a>.</p>"
        "<pre><code>def f():\n\n    return 1\n</code></pre></body></html>"
    )
    md = html_to_markdown(page)
    assert md.startswith("# Tides & boats") and "The **harbor** was quiet." in md
    assert "```\ndef f():\n\n    return 1\n```" in md
    assert not any(s in md for s in ("Menu", "Home", "tracking", "color", "<"))
    # An HTML document without an .html name is still read as HTML; the fence keeps the code in one chunk.
    [rec] = records(page, "text")
    assert rec.text == md
    assert looks_like_html('<?xml version="1.0"?>\n<!-- saved -->\n<html xmlns="x"><p>a</p></html>')
    assert not looks_like_html("<!--" * 10_000) and not looks_like_html("The <html> tag starts a page.")


def test_decompress_gzip_bzip2_zstd_by_header():
    data = (PROSE + "\n").encode() * 50
    for packed in (gzip.compress(data), bz2.compress(data), zstandard.ZstdCompressor().compress(data)):
        assert decompress(packed, 1 << 20) == data
    assert decompress(data, 10) == data  # not compressed: as it is, whatever the limit


def test_decompression_is_capped_and_damage_is_named():
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in about 8 KiB
    assert len(bomb) < 64 << 10
    refused = decompress(bomb, 1 << 20)
    assert refused.code == "too_large" and "max_file_mb" in refused.detail
    zbomb = zstandard.ZstdCompressor().compress(b"a" * (8 << 20))
    assert decompress(zbomb, 1 << 20).code == "too_large"
    assert decompress(gzip.compress(PROSE.encode())[:-12], 1 << 20).code == "bad_archive"


def test_a_tar_archive_is_named_as_such():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = len(PROSE)
        tar.addfile(info, io.BytesIO(PROSE.encode()))
    refused = decode(decompress(gzip.compress(buf.getvalue()), 1 << 20), 0.01)
    assert refused.code == "archive" and "unpack" in refused.detail
