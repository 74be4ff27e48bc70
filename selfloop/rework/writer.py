"""Accepted rework records on disk: ``corpus/rework/gen-NNNN/<strategy>.jsonl``.

Guarantees (ARCHITECTURE.md): rework is append-only and atomic. A file appears whole or not at all, and an existing
file is never rewritten, so a cycle resumed after a crash writes nothing twice. Each line loads as it is with
``datasets.load_dataset("json", ...)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selfloop.records import is_task_object

REQUIRED = ("id", "strategy", "generation", "sources", "verdicts", "created_at")


def rework_file(rework_dir: Path, generation: int, strategy: str, cycle_id: int) -> Path:
    """Where one cycle's accepted records of one strategy go."""
    return Path(rework_dir) / f"gen-{generation:04d}" / f"{strategy}-c{cycle_id:05d}.jsonl"


def validate_record(record: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"rework record lacks provenance fields {missing}")
    if ("text" in record) == ("messages" in record) and not is_task_object(record):
        raise ValueError("a rework record has exactly one of 'text' or 'messages', or is a task record")


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> bool:
    """Write records atomically to a new file. Returns False if the file already exists.

    A temp file in the same directory, fsync, rename, fsync the directory. Each line is one
    record: ``id``, ``text`` or ``messages``, and provenance (source document ids,
    strategy, the generation that wrote it, judge verdicts and scores, time).
    """
    path = Path(path)
    if path.exists():
        return False
    rows = list(records)
    for r in rows:
        validate_record(r)
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
