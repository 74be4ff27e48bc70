"""From a parsed record to a document ready to store: normalize, filter, hash, split key.

Also the text-quality check for generated text (``quality_check``), so the judge holds rework candidates to the
same rules as ingest. Task records are not filtered and are deduplicated exactly only.

Does not cover: deduplication against the corpus and storage (``selfloop.ingest``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from selfloop.config import IngestConfig
from selfloop.corpus.filters import first_failure, non_text
from selfloop.corpus.formats import ChatRecord, Record, TaskItem, TextRecord
from selfloop.corpus.normalize import normalize
from selfloop.records import Reason


@dataclass(frozen=True)
class Prepared:
    locator: str
    kind: str  # text | chat | task
    content: str  # normalized text, or canonical JSON
    hash: str  # sha256 hex of content
    split_key: str  # what the held-out split is derived from
    dedup_text: str | None  # what near-dedup compares; None = exact dedup only
    drop: Reason | None  # a quality filter's verdict


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def chat_json(messages: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return json.dumps(
        {"messages": [{"role": r, "content": c} for r, c in messages]},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )


def chat_text(content: str) -> str:
    """The text of a stored chat document (its message contents joined), as filters and near-dedup see it."""
    return "\n".join(m["content"] for m in json.loads(content)["messages"])


def dedup_text_of(kind: str, content: str) -> str | None:
    """What near-dedup compares for a stored document of this kind."""
    if kind == "text":
        return content
    if kind == "chat":
        return chat_text(content)
    return None


def prepare(record: Record, cfg: IngestConfig) -> Prepared:
    """One record made ready to store; per kind:

    - text: raw binary check, normalize, all quality filters; near-dedup on the text.
    - chat: each message normalized; filters run on the contents joined by newlines;
      stored as canonical JSON ``{"messages": [{"content", "role"}...]}``.
    - task: validated already; stored as canonical JSON, not filtered (prompts and
      code are short or symbol-heavy by nature) and deduplicated exactly only, since
      templated tasks differ in a number or two and would all look near-duplicate.
    """
    if isinstance(record, TaskItem):
        content = record.task.canonical_json()
        return Prepared(record.locator, "task", content, content_hash(content), record.task.split_key, None, None)
    if isinstance(record, ChatRecord):
        raw = "\n".join(c for _, c in record.messages)
        messages = [(role, normalize(c)) for role, c in record.messages]
        content = chat_json(messages)
        text = "\n".join(c for _, c in messages)
        kind = "chat"
    elif isinstance(record, TextRecord):
        raw = record.text
        content = text = normalize(raw)
        kind = "text"
    else:
        raise TypeError(f"not a record: {record!r}")
    drop = non_text(raw, cfg) or first_failure(text, cfg)
    digest = content_hash(content)
    return Prepared(record.locator, kind, content, digest, digest, text, drop)


def quality_check(text: str, cfg: IngestConfig) -> tuple[bool, str | None]:
    """Would this text pass ingest's quality filters? ``(True, None)`` or ``(False, "code: detail")``."""
    drop = non_text(text, cfg) or first_failure(normalize(text), cfg)
    return (drop is None, None if drop is None else str(drop))
