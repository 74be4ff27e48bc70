"""Accepted rework on disk, one dataset per kind: ``corpus/rework/<kind>/gen-NNNN/<strategy>-cNNNNN.jsonl``.

Guarantees (ARCHITECTURE.md): rework is append-only and atomic. A file appears whole or not at all, and an existing
file is never rewritten, so a cycle resumed after a crash writes nothing twice. Every row of a kind has the same
columns (``SCHEMAS``), none of them null, so ``datasets.load_dataset("json", data_files="rework/<kind>/**/*.jsonl")``
loads any set of a kind's files in any order (the README has the recipes for ``datasets`` and TRL).

Does not cover: which candidates are accepted (``selfloop.rework.phase``), reading rework back (ingest).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Provenance whose shape varies from row to row (source ids, each judge's verdict and score) is JSON text:
# a list that is empty in one file and a struct with other fields in the next would not load as one dataset.
_JSON = "json"
_OPTIONAL = "optional"  # a string that may be absent: "" (a task's checker, tests, solution or answer)
_MESSAGES = "messages"  # [{"role", "content"}], roles and contents strings
_PROVENANCE: dict[str, Any] = {
    "kind": str,  # of the candidate: text, python, chat or task
    "label_source": str,  # who selected it: oracle (task checker), tool (Python run), self (text judges)
    "strategy": str,
    "generation": int,  # the generation that wrote it
    "cycle": int,
    "created_at": float,
    "sources": _JSON,  # corpus document ids
    "verdicts": _JSON,  # [{"judge", "status", "score", "reason"}], in the order given
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"id": str, "text": str, **_PROVENANCE},
    "chat": {"id": str, _MESSAGES: _MESSAGES, **_PROVENANCE},
    # A self-labelled task (selfloop.records.TaskRecord, "" for an absent field) with the sample that solved it.
    "tasks": {
        "id": str,
        "family": str,
        "difficulty": int,
        "prompt": str,
        "checker": _OPTIONAL,
        "tests": _OPTIONAL,
        "solution": _OPTIONAL,
        "answer": _OPTIONAL,
        "variants": _JSON,
        "candidate": str,
        "answer_kind": str,
        "rationalized": bool,
        "completion": str,
        **_PROVENANCE,
    },
    # TRL's standard preference format; trained by DPO from the store, so ingest leaves this kind alone.
    "pairs": {
        "prompt": str,
        "chosen": str,
        "rejected": str,
        "source": str,  # the judge that paired them: a_vs_b or task
        "generation": int,
        "cycle": int,
        "created_at": float,
    },
    # The frontier model's kept labels (selfloop.frontier.run), one file per round: TRL's prompt-completion format.
    "frontier": {
        "id": str,
        "prompt": str,
        "completion": str,
        "family": str,
        "level": int,
        "round": int,
        "label_source": str,  # self, tool or oracle
        "audit_correct": bool,  # the answer key's verdict: recorded, never used to select
        "program_prompt": _OPTIONAL,  # tool: what the model was asked to write the program for
        "program": _OPTIONAL,  # tool: the program whose stdout is the completion
        "strategy": str,
        "generation": int,  # the champion that labelled it
        "created_at": float,
        "filters": _JSON,  # the label source and its filters
    },
}
PAIRS = "pairs"
FRONTIER = "frontier"


def rework_file(rework_dir: Path, kind: str, generation: int, strategy: str, cycle_id: int) -> Path:
    """Where one cycle's accepted records of one kind and strategy go."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown rework kind {kind!r} (known: {', '.join(SCHEMAS)})")
    return Path(rework_dir) / kind / f"gen-{generation:04d}" / f"{strategy}-c{cycle_id:05d}.jsonl"


def dataset_row(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as a row of its kind: exactly the kind's columns, in their types; ValueError when it cannot be."""
    schema = SCHEMAS[kind]
    missing = [k for k, t in schema.items() if k not in record and t is not _OPTIONAL]
    if missing:
        raise ValueError(f"a {kind} rework record lacks {missing}")
    return {k: _column(kind, k, t, record.get(k)) for k, t in schema.items()}


def _column(kind: str, key: str, kind_of: Any, value: Any) -> Any:
    if kind_of is _JSON:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if kind_of is _OPTIONAL:
        value = "" if value is None else value
        kind_of = str
    if kind_of is _MESSAGES:
        if not (isinstance(value, list) and value and all(_is_message(m) for m in value)):
            raise ValueError(f'a {kind} rework record\'s {key} must be a non-empty list of {{"role", "content"}}')
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if kind_of is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
        raise ValueError(f"a {kind} rework record's {key} must be {kind_of.__name__}, got {type(value).__name__}")
    return value


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)


def write_records(path: Path, records: Iterable[dict[str, Any]], *, kind: str) -> bool:
    """Write records as rows of ``kind`` atomically to a new file. Returns False if the file already exists.

    A temp file in the same directory, fsync, rename, fsync the directory. Each line is one
    row: the record's content (``text``, ``messages``, a task, a pair) and its provenance
    (source document ids, strategy, the generation that wrote it, judge verdicts and scores, time).
    """
    path = Path(path)
    if path.exists():
        return False
    rows = [dataset_row(kind, r) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the name exists, so two writers can never both "win".
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
