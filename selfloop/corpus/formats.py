"""Parse a decoded file into records: text by its reader (plain, Markdown, Python, HTML), JSON records by shape.

Every record has a locator (``"line 12"``, ``"record 3"``, ``"chunk 3 (lines 40-95)"``); a bad JSON record is
rejected alone. Nothing here executes anything from the file.

Does not cover: decoding and decompression (``selfloop.corpus.decode``), normalization, quality filters,
deduplication (``selfloop.corpus.pipeline``).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from selfloop.records import Reason, TaskRecord, is_task_object

# Compression suffixes: the reader is chosen by the name without them (``a.jsonl.gz`` is read as JSONL).
COMPRESSED = (".gz", ".zst", ".bz2")


@dataclass(frozen=True)
class TextRecord:
    locator: str
    text: str


@dataclass(frozen=True)
class ChatRecord:
    locator: str
    messages: tuple[tuple[str, str], ...]  # (role, content)


@dataclass(frozen=True)
class TaskItem:
    locator: str
    task: TaskRecord


@dataclass(frozen=True)
class Rejected:
    """A part of the file that is not a record (a malformed JSON record); kept for inspection."""

    locator: str
    reason: Reason
    raw: str


Record = TextRecord | ChatRecord | TaskItem
# What one JSON record holds: text, chat turns, a task, or why it is none of them.
Payload = str | tuple[tuple[str, str], ...] | TaskRecord | Reason


def reader_for(name: str, readers: Mapping[str, str]) -> str:
    """The reader of a file by its name: its suffix (after any compression suffix) in ``readers``, else ``text``."""
    lowered = name.lower()
    for suffix in COMPRESSED:
        lowered = lowered.removesuffix(suffix)
    return readers.get(PurePosixPath(lowered).suffix, "text")


def parse(
    text: str, fmt: str, *, chunk_chars: int, max_json_depth: int, fields: Mapping[str, str] | None = None
) -> list[Record | Rejected] | Reason:
    """The records of one decoded file, by reader, or why the whole file is not records:

    - ``text`` / ``md``: text documents; files longer than ``chunk_chars`` are split at
      blank lines (never inside a Markdown code fence) into documents of about that size.
      A ``text`` file that starts like an HTML document is read as ``html``.
    - ``html``: converted to Markdown (``html_to_markdown``), then read as ``md``.
    - ``py``: one text document, or when long, chunks cut at top-level ``def`` /
      ``class`` boundaries (a comment block directly above stays with its definition).
    - ``jsonl``: one record per line (``json_record`` says which shapes); a bad line is
      rejected alone, with its line number and reason.
    - ``json``: an array of records (``"record N"``), one record, or JSON Lines (what
      ``datasets``' ``to_json`` writes).

    ``fields`` renames the keys of JSON records before their shape is read (``{"question": "prompt"}``).
    Contents are returned as found (newlines already normalized to LF).
    """
    fields = fields or {}
    if fmt == "jsonl":
        return list(parse_jsonl(text, max_json_depth=max_json_depth, fields=fields))
    if fmt == "json":
        return parse_json(text, max_json_depth=max_json_depth, fields=fields)
    if fmt == "text" and looks_like_html(text):
        fmt = "html"
    if fmt == "html":
        text, fmt = html_to_markdown(text), "md"
    lines = text.split("\n")
    if fmt == "py":
        ranges = pack(
            python_units(lines) or paragraph_blocks(lines, fenced=False), lines, chunk_chars, splittable=lambda a: False
        )
    elif fmt == "md":
        # A fenced code block stays whole, however long: half a code sample teaches nothing.
        ranges = pack(
            paragraph_blocks(lines, fenced=True), lines, chunk_chars, splittable=lambda a: not _is_fence(lines[a])
        )
    else:
        ranges = pack(paragraph_blocks(lines, fenced=False), lines, chunk_chars, splittable=lambda a: True)
    out: list[Record | Rejected] = []
    for i, (start, end) in enumerate(ranges, 1):
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # trailing blank lines: not part of the chunk's locator
        out.append(TextRecord(f"chunk {i} (lines {start + 1}-{end})", "\n".join(lines[start:end])))
    return out


# ----------------------------------------------------------------- text chunking
# Ranges are half-open line index ranges [start, end) into the file's lines.


def paragraph_blocks(lines: list[str], *, fenced: bool) -> list[tuple[int, int]]:
    """Maximal runs of non-blank lines; with ``fenced``, blank lines inside ``` fences do not split."""
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    in_fence = False
    for i, line in enumerate(lines):
        if fenced and _is_fence(line):
            in_fence = not in_fence
        if line.strip() or in_fence:
            if start is None:
                start = i
        elif start is not None:
            blocks.append((start, i))
            start = None
    if start is not None:
        blocks.append((start, len(lines)))
    return blocks


def _is_fence(line: str) -> bool:
    return line.lstrip().startswith(("```", "~~~"))


def python_units(lines: list[str]) -> list[tuple[int, int]] | None:
    """Line ranges cut at top-level def/class (with decorators and the comment block above).

    None when the source does not parse: it is then chunked like plain text.
    """
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    cuts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            while first > 0 and lines[first - 1].startswith("#"):
                first -= 1
            cuts.append(first)
    bounds = sorted({0, *cuts, len(lines)})
    return [(a, b) for a, b in pairwise(bounds) if any(line.strip() for line in lines[a:b])]


def pack(
    blocks: list[tuple[int, int]], lines: list[str], chunk_chars: int, *, splittable: Callable[[int], bool]
) -> list[tuple[int, int]]:
    """Greedily merge consecutive blocks into ranges of about ``chunk_chars`` characters.

    A block larger than ``chunk_chars`` is cut at line boundaries when
    ``splittable(its first line index)``; otherwise (code) it stays whole.
    """
    cum = [0]
    for line in lines:
        cum.append(cum[-1] + len(line) + 1)

    def size(a: int, b: int) -> int:
        return cum[b] - cum[a]

    units: list[tuple[int, int]] = []
    for a, b in blocks:
        if size(a, b) > chunk_chars and splittable(a):
            start = a
            for i in range(a, b):
                if i > start and size(start, i + 1) > chunk_chars:
                    units.append((start, i))
                    start = i
            units.append((start, b))
        else:
            units.append((a, b))

    ranges: list[tuple[int, int]] = []
    for a, b in units:
        if ranges and size(ranges[-1][0], b) <= chunk_chars:
            ranges[-1] = (ranges[-1][0], b)
        else:
            ranges.append((a, b))
    return ranges


# ----------------------------------------------------------------- HTML

_HTML_START = re.compile(r"<(!doctype\s+html|html[\s>])", re.IGNORECASE)
# Never text to learn from: page chrome, code that runs in the browser, embedded media.
_HTML_DROP = ("head", "script", "style", "noscript", "template", "nav", "svg", "iframe", "object")


def looks_like_html(text: str) -> bool:
    """Whether ``text`` starts as an HTML document does (after whitespace, comments, an XML declaration)."""
    head = text.lstrip()
    while head.startswith(("<!--", "<?xml")):
        close = "-->" if head.startswith("<!--") else "?>"
        end = head.find(close)
        if end < 0:
            return False
        head = head[end + len(close) :].lstrip()
    return _HTML_START.match(head) is not None


def html_to_markdown(html: str) -> str:
    """The text of an HTML page as Markdown: headings, lists, tables and ``<pre>`` code blocks (fenced) kept.

    BeautifulSoup's pure-Python parser builds the tree (it takes any tag soup) and markdownify
    writes it out; the page's head, scripts, styles and navigation are left out, links keep
    only their text. Line numbers of chunks refer to this Markdown, not to the HTML source.
    """
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    converter = MarkdownConverter(heading_style="ATX", bullets="-", strip=["a", "img"], code_language="")
    return converter.convert_soup(soup).strip()


# ----------------------------------------------------------------- JSON records


def parse_jsonl(text: str, *, max_json_depth: int, fields: Mapping[str, str]) -> Iterator[Record | Rejected]:
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield _item(f"line {number}", line, parse_json_line(line, max_json_depth=max_json_depth, fields=fields))


def parse_json(text: str, *, max_json_depth: int, fields: Mapping[str, str]) -> list[Record | Rejected] | Reason:
    """A ``.json`` file: an array of records, one record, or JSON Lines."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # more than one value: JSON Lines under a .json name
            return list(parse_jsonl(text, max_json_depth=max_json_depth, fields=fields))
        return Reason("invalid_json", f"{e.msg} at line {e.lineno} column {e.colno}; fix it, or rename it .txt")
    except RecursionError:
        return Reason("too_deep", "nested too deeply to parse")
    if isinstance(obj, dict):
        found = _checked(obj, text, max_json_depth, fields)
        if isinstance(found, Reason) and found.code == "missing_field":  # a JSON document, not a record
            return Reason("unsupported_json", f"{found.detail}; or rename the file .txt to read it as text")
        return [_item("record 1", text, found)]
    if not isinstance(obj, list):
        return Reason(
            "unsupported_json", f"a JSON {type(obj).__name__}, not records; rename it .txt to read it as text"
        )
    out: list[Record | Rejected] = []
    for i, element in enumerate(obj, 1):
        raw = json.dumps(element, ensure_ascii=False)
        out.append(_item(f"record {i}", raw, _checked(element, raw, max_json_depth, fields)))
    return out


def _item(locator: str, raw: str, found: Payload) -> Record | Rejected:
    if isinstance(found, Reason):
        return Rejected(locator, found, raw)
    if isinstance(found, TaskRecord):
        return TaskItem(locator, found)
    if isinstance(found, str):
        return TextRecord(locator, found)
    return ChatRecord(locator, found)


def parse_json_line(line: str, *, max_json_depth: int, fields: Mapping[str, str] | None = None) -> Payload:
    """One JSONL line to its payload (text, chat messages or task), or why it is not a record."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return Reason("invalid_json", f"{e.msg} at column {e.colno}")
    except RecursionError:
        return Reason("too_deep", "nested too deeply to parse")
    return _checked(obj, line, max_json_depth, fields or {})


def _checked(obj: Any, raw: str, max_json_depth: int, fields: Mapping[str, str]) -> Payload:
    depth = json_depth(obj)
    if depth > max_json_depth:
        return Reason("too_deep", f"nesting depth {depth} > max_json_depth {max_json_depth}")
    if _SURROGATE_ESCAPE.search(raw) and (bad := _lone_surrogate(obj)):
        return Reason("invalid_unicode", f"a string holds the lone surrogate {bad}; JSON text must be valid Unicode")
    if not isinstance(obj, dict):
        return Reason("wrong_type", f"expected a JSON object, got {type(obj).__name__}")
    return json_record(obj, fields)


def json_record(obj: dict[str, Any], fields: Mapping[str, str]) -> Payload:
    """A JSON object's payload by its shape (keys renamed by ``fields`` first), first match wins:

    - a task: ``family`` and ``prompt`` (``selfloop.records.TaskRecord``, strict);
    - chat: ``messages`` (OpenAI / TRL conversational), ``conversations`` (ShareGPT,
      ``from``/``value``), or ``prompt`` and ``completion`` as message lists (TRL);
    - instruction pairs, read as a user/assistant chat: TRL ``prompt``/``completion``
      strings, Alpaca ``instruction`` (+ ``input``) / ``output`` (+ ``system``);
    - text: ``text``.

    Other keys (ids, sources, ``weight``...) are ignored; they are never a reason to reject.
    """
    obj = {fields.get(k, k): v for k, v in obj.items()}
    if is_task_object(obj):
        try:
            return TaskRecord.model_validate(obj)
        except ValidationError as e:
            return Reason("invalid_task", _first_error(e))
    if "messages" in obj:
        return chat(obj["messages"])
    if "conversations" in obj:
        return chat(obj["conversations"], "conversations")
    if "prompt" in obj and "completion" in obj:
        prompt, completion = obj["prompt"], obj["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            return chat([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}])
        if isinstance(prompt, list) and isinstance(completion, list):
            return chat(prompt + completion, "prompt+completion")
        return Reason("wrong_type", '"prompt" and "completion" must both be strings or both message lists')
    if "instruction" in obj and "output" in obj:
        parts = [obj["instruction"], obj.get("input") or ""]
        if not all(isinstance(p, str) for p in [*parts, obj["output"], obj.get("system") or ""]):
            return Reason("wrong_type", '"instruction", "input", "output" and "system" must be strings')
        turns = [{"role": "system", "content": obj["system"]}] if obj.get("system") else []
        turns += [
            {"role": "user", "content": "\n\n".join(p for p in parts if p.strip())},
            {"role": "assistant", "content": obj["output"]},
        ]
        return chat(turns)
    if "text" in obj:
        if not isinstance(obj["text"], str):
            return Reason("wrong_type", f'"text" must be a string, got {type(obj["text"]).__name__}')
        return obj["text"]
    keys = ", ".join(sorted(obj)[:12]) or "none"
    return Reason(
        "missing_field",
        f'keys {keys}: expected "text", "messages", "conversations", "prompt"+"completion", '
        f'"instruction"+"output" or a task ("family"+"prompt"); map your keys in [ingest.json_fields]',
    )


# Role names of the common chat formats (OpenAI, ShareGPT, Gemini) to the four selfloop stores.
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}


def chat(messages: Any, where: str = "messages") -> tuple[tuple[str, str], ...] | Reason:
    """A message list to (role, content) turns, or why it is not a conversation.

    A message is ``{"role", "content"}`` or ShareGPT's ``{"from", "value"}``; other keys
    (``name``, ``weight``, ``tool_call_id``...) are ignored. Content may be a list of text
    parts. An assistant turn that only calls tools has its ``tool_calls`` as content (one
    ``{"name", "arguments"}`` JSON object a line), so the tool turn after it has its cause.
    """
    if not isinstance(messages, list) or not messages:
        return Reason("invalid_chat", f"{where} must be a non-empty list of messages")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        at = f"{where}.{i}"
        if not isinstance(m, dict):
            return Reason("invalid_chat", f"{at}: a message must be an object, got {type(m).__name__}")
        role = ROLES.get(str(m.get("role", m.get("from"))).lower())
        if role is None:
            known = ", ".join(ROLES)
            return Reason("invalid_chat", f"{at}.role: unknown role {m.get('role', m.get('from'))!r} (known: {known})")
        content = _content(m.get("content", m.get("value")), m.get("tool_calls"))
        if isinstance(content, Reason):
            return Reason(content.code, f"{at}.content: {content.detail}")
        if role == "system" and i > 0:
            return Reason("invalid_chat", f"{at}: a system message may only come first")
        turns.append((role, content))
    if not any(role == "assistant" for role, _ in turns):
        return Reason("invalid_chat", f"{where}: no assistant turn")
    return tuple(turns)


def _content(content: Any, tool_calls: Any) -> str | Reason:
    if isinstance(content, list):  # OpenAI content parts
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            return Reason("invalid_chat", "only text content parts are read")
        content = "".join(p["text"] for p in content)
    if (content is None or content == "") and isinstance(tool_calls, list) and tool_calls:
        calls = [c.get("function", c) if isinstance(c, dict) else c for c in tool_calls]
        return "\n".join(json.dumps(c, ensure_ascii=False, sort_keys=True) for c in calls)
    if not isinstance(content, str):
        return Reason("invalid_chat", f"must be a string, got {type(content).__name__}")
    if not content.strip():
        return Reason("invalid_chat", "content is empty")
    return content


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg'].removeprefix('Value error, ')}{more}"


# A \uD800-\uDFFF escape: the only way a lone surrogate (which no store, file or
# tokenizer can take) gets into a string parsed from UTF-8 text. Pairs match too;
# _lone_surrogate tells them apart.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(obj: Any) -> str | None:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return repr(e.object[e.start : e.end])
    return None


def json_depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
            deepest = max(deepest, depth + 1)
    return deepest
