"""Why a file or document was not taken: a short snake_case code plus a human detail.

Codes are what statistics group by (``too_short``, ``invalid_json``...); the detail
says what exactly was wrong (``12 chars < min_chars 32``). Stored in the state
database as ``"code: detail"`` so one text column keeps both and the code stays
recoverable with :func:`code_of`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


def code_of(stored: str | None) -> str:
    """The code part of a stored reason (``"too_short: 12 chars..." -> "too_short"``)."""
    if not stored:
        return ""
    return stored.split(":", 1)[0].strip()
