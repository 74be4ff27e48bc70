"""Reading task records without depending on their class: judges accept a
`selfloop.records.TaskRecord` or a plain mapping with the same fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def task_field(task: Any, name: str) -> Any:
    if task is None:
        return None
    if isinstance(task, Mapping):
        return task.get(name)
    return getattr(task, name, None)
