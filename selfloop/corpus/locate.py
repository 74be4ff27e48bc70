"""Where a path sits in the corpus: its origin (orig | rework), its key, whether it is ignored.

A file's key in the state database is ``"<origin>/<path relative to that root>"``
(``orig/notes/a.txt``), so the two roots never collide and keys stay valid when
the project directory moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from selfloop.config import ProjectPaths


@dataclass(frozen=True)
class Located:
    origin: str  # orig | rework
    root: Path
    rel: PurePosixPath

    @property
    def key(self) -> str:
        return file_key(self.origin, self.rel)


def file_key(origin: str, rel: PurePosixPath | str) -> str:
    return f"{origin}/{PurePosixPath(rel).as_posix()}"


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
