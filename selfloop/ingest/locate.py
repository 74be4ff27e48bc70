"""Where a path sits in the corpus: its origin (orig | rework), its key, whether it is ignored.

A file's key in the state database is ``"<origin>/<path relative to that root>"``
(``orig/notes/a.txt``), so the two roots never collide and keys stay valid when
the project directory moves. Bytes of a name that are not UTF-8 appear in the
key as ``\\xff`` escapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path, PurePosixPath

from selfloop.config import ProjectPaths


@dataclass(frozen=True)
class Located:
    origin: str  # orig | rework
    root: Path
    rel: PurePosixPath

    @cached_property  # read for every document stored from the file
    def key(self) -> str:
        return file_key(self.origin, self.rel)


def file_key(origin: str, rel: PurePosixPath | str) -> str:
    # A file name that is not valid UTF-8 reaches Python with lone surrogates
    # (surrogateescape), which SQLite, JSON and logs cannot take: such bytes are
    # spelled as backslash escapes in the key, so the file is still tracked.
    name = PurePosixPath(rel).as_posix().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"{origin}/{name}"


def roots(paths: ProjectPaths) -> dict[str, Path]:
    return {"orig": paths.orig, "rework": paths.rework}


def locate(path: Path | str, paths: ProjectPaths) -> Located | None:
    """The origin and relative path of ``path`` (not following symlinks), or None outside both roots."""
    p = Path(path).absolute()
    for origin, root in roots(paths).items():
        if p != root and p.is_relative_to(root):
            return Located(origin, root, PurePosixPath(p.relative_to(root).as_posix()))
    return None


def is_ignored(rel: PurePosixPath, patterns: list[str]) -> bool:
    """True when any component of the relative path matches an ignore glob (hidden dirs hide their files)."""
    return any(fnmatchcase(part, pat) for part in rel.parts for pat in patterns)
