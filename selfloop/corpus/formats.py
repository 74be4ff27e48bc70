"""Parse a decoded file into records, by extension (``.txt``, ``.md``, ``.py``, ``.jsonl``).

Every record has a locator (``"line 12"``, ``"chunk 3 (lines 40-95)"``); a bad JSONL line is rejected alone. Nothing
here executes anything from the file.

Does not cover: normalization, quality filters, deduplication (``selfloop.corpus.pipeline``).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from selfloop.records import Reason, TaskRecord, is_task_object

FORMATS: dict[str, str] = {".txt": "txt", ".md": "md", ".py": "py", ".jsonl": "jsonl"}


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
    """A part of the file that is not a record (a malformed JSONL line); kept for inspection."""

    locator: str
    reason: Reason
    raw: str


Record = TextRecord | ChatRecord | TaskItem


def parse(text: str, fmt: str, *, chunk_chars: int, max_json_depth: int) -> Iterator[Record | Rejected]:
    """The records of one decoded file, by extension:

    - ``.txt`` / ``.md``: text documents; files longer than ``chunk_chars`` are split at
      blank lines (never inside a Markdown code fence) into documents of about that size.
    - ``.py``: one text document, or when long, chunks cut at top-level ``def`` /
      ``class`` boundaries (a comment block directly above stays with its definition).
    - ``.jsonl``: one record per line: ``{"text": ...}`` (text), ``{"messages": [...]}``
      (OpenAI/TRL chat format) or a task record (``"family"`` and ``"prompt"``). A bad
      line is rejected alone, with its line number and reason.

    Contents are returned as found (newlines already normalized to LF).
    """
    if fmt == "jsonl":
        yield from parse_jsonl(text, max_json_depth=max_json_depth)
        return
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
    for i, (start, end) in enumerate(ranges, 1):
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # trailing blank lines: not part of the chunk's locator
        yield TextRecord(f"chunk {i} (lines {start + 1}-{end})", "\n".join(lines[start:end]))


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


# ----------------------------------------------------------------- JSONL


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _visible(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content is empty")
        return v


class _Chat(BaseModel):
    # Other top-level keys (ids, source URLs...) are metadata and are allowed, not stored.
    messages: list[_Message]


def parse_jsonl(text: str, *, max_json_depth: int) -> Iterator[Record | Rejected]:
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        locator = f"line {number}"
        result = parse_json_line(line, max_json_depth=max_json_depth)
        if isinstance(result, Reason):
            yield Rejected(locator, result, line)
        elif isinstance(result, TaskRecord):
            yield TaskItem(locator, result)
        elif isinstance(result, str):
            yield TextRecord(locator, result)
        else:
            yield ChatRecord(locator, result)


def parse_json_line(line: str, *, max_json_depth: int) -> str | tuple[tuple[str, str], ...] | TaskRecord | Reason:
    """One JSONL line to its payload (text, chat messages or task), or why it is not a record."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return Reason("invalid_json", f"{e.msg} at column {e.colno}")
    except RecursionError:
        return Reason("too_deep", "nested too deeply to parse")
    depth = json_depth(obj)
    if depth > max_json_depth:
        return Reason("too_deep", f"nesting depth {depth} > max_json_depth {max_json_depth}")
    if _SURROGATE_ESCAPE.search(line) and (bad := _lone_surrogate(obj)):
        return Reason("invalid_unicode", f"a string holds the lone surrogate {bad}; JSON text must be valid Unicode")
    if not isinstance(obj, dict):
        return Reason("wrong_type", f"expected a JSON object, got {type(obj).__name__}")
    if is_task_object(obj):
        try:
            return TaskRecord.model_validate(obj)
        except ValidationError as e:
            return Reason("invalid_task", _first_error(e))
    if "messages" in obj:
        return _chat(obj)
    if "text" in obj:
        if not isinstance(obj["text"], str):
            return Reason("wrong_type", f'"text" must be a string, got {type(obj["text"]).__name__}')
        return obj["text"]
    keys = ", ".join(sorted(obj)) or "none"
    return Reason("missing_field", f'expected "text", "messages", or "family"+"prompt" (task); keys: {keys}'[:200])


def _chat(obj: dict[str, Any]) -> tuple[tuple[str, str], ...] | Reason:
    try:
        chat = _Chat.model_validate(obj)
    except ValidationError as e:
        return Reason("invalid_chat", _first_error(e))
    msgs = chat.messages
    if not msgs:
        return Reason("invalid_chat", "messages is empty")
    if any(m.role == "system" for m in msgs[1:]):
        return Reason("invalid_chat", "a system message may only come first")
    if not any(m.role == "assistant" for m in msgs):
        return Reason("invalid_chat", "no assistant turn")
    return tuple((m.role, m.content) for m in msgs)


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
