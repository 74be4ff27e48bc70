"""The file side of ingest: walking orig/ and rework/, locating a path in them, probing and reading one file.

A file's key is ``"<origin>/<path relative to that root>"`` (``orig/notes/a.txt``). Links that leave the root or
loop, directories reached through a link, FIFOs, sockets, devices and oversized files are refused without being
opened; reads use ``O_NONBLOCK | O_NOFOLLOW`` and are re-checked with ``fstat``, so a path swapped for a FIFO
meanwhile is refused too. Nothing here writes, to the corpus or the store.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path, PurePosixPath

from selfloop.config import ProjectPaths
from selfloop.corpus.formats import reader_for
from selfloop.errors import SelfloopError
from selfloop.records import Reason

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- locating


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
    """The file's key in the state database: ``"<origin>/<path relative to that root>"``, so
    the two roots never collide and keys stay valid when the project directory moves.
    """
    name = PurePosixPath(rel).as_posix().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"{origin}/{name}"


def roots(paths: ProjectPaths) -> dict[str, Path]:
    return {"orig": paths.orig, "rework": paths.rework}


def locate(path: Path | str, paths: ProjectPaths) -> Located | None:
    """The origin and relative path of ``path`` (not following symlinks), or None outside both roots."""
    p = Path(path).absolute()
    if p.is_relative_to(paths.frontier_rework):
        return None  # the frontier model's own data (selfloop.frontier.run reads it)
    for origin, root in roots(paths).items():
        if p != root and p.is_relative_to(root):
            return Located(origin, root, PurePosixPath(p.relative_to(root).as_posix()))
    return None


def is_ignored(rel: PurePosixPath, patterns: list[str]) -> bool:
    """True when any component of the relative path matches an ignore glob (hidden dirs hide their files)."""
    return any(fnmatchcase(part, pat) for part in rel.parts for pat in patterns)


# rework/pairs/ holds the preference pairs (selfloop.rework.writer): DPO trains on them from the store, so they
# are not documents.
PAIRS_DIR = "pairs"


def is_pairs(loc: Located) -> bool:
    return loc.origin == "rework" and loc.rel.parts[:1] == (PAIRS_DIR,)


# --------------------------------------------------------------------------- walking


def ensure_roots(paths: ProjectPaths) -> None:
    """orig/ must exist; rework/ is selfloop's own and is created."""
    for origin, root in roots(paths).items():
        if not root.is_dir():
            if origin == "orig":
                raise SelfloopError(f"corpus directory {root} does not exist (create it, or fix [paths] orig)")
            root.mkdir(parents=True, exist_ok=True)


def walk(paths: ProjectPaths, ignore: list[str]) -> Iterator[Path]:
    """Every non-ignored entry that is not a real directory, in a stable order; links are not followed."""
    for origin, root in roots(paths).items():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_walk_error):
            base = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                skipped = base / d == paths.frontier_rework or (origin == "rework" and base == root and d == PAIRS_DIR)
                if is_ignored(PurePosixPath(d), ignore) or skipped:
                    continue
                if (base / d).is_symlink():
                    yield base / d  # quarantined as a directory link
                else:
                    keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                yield base / name


def _walk_error(err: OSError) -> None:
    log.warning("cannot list %s: %s", err.filename, err.strerror)


def enough_changed(
    paths: list[Path], project: ProjectPaths, known: dict[str, tuple[int | None, int | None]], enough: float
) -> bool:
    """Whether the files of ``paths`` new or changed against ``known`` (key -> size, mtime_ns) hold ``enough`` bytes."""
    total = 0
    for path in paths:
        loc = locate(path, project)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if loc is not None and stat.S_ISREG(st.st_mode) and known.get(loc.key) != (st.st_size, st.st_mtime_ns):
            total += st.st_size
            if total >= enough:
                return True
    return False


# --------------------------------------------------------------------------- probing and reading


@dataclass(frozen=True)
class Probe:
    size: int | None
    mtime_ns: int | None
    real: Path | None  # resolved path to read; None when refused
    refused: Reason | None


_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


def probe(path: Path, root: Path) -> Probe:
    """``path`` must exist as a directory entry (lstat succeeds); raises FileNotFoundError otherwise.

    Refuses, with a reason and without opening anything: symlinks that leave the corpus
    root, symlink loops, broken links, directories reached through a link, FIFOs,
    sockets and devices (opening a FIFO would block the daemon), and files over the size
    limit.
    """
    link = path.lstat()
    size, mtime = link.st_size, link.st_mtime_ns
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return Probe(
            size, mtime, None, Reason("broken_symlink", f"points to {os.readlink(path)!r}, which does not exist")
        )
    except RuntimeError:  # Python < 3.13 reports loops this way
        return Probe(size, mtime, None, Reason("symlink_loop", "symbolic link loop"))
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Probe(size, mtime, None, Reason("symlink_loop", "symbolic link loop"))
        return Probe(size, mtime, None, Reason("unreadable", e.strerror or str(e)))
    if not real.is_relative_to(root.resolve()):
        return Probe(
            size, mtime, None, Reason("symlink_outside", f"resolves to {real}, outside the corpus root {root}")
        )
    st = real.stat()
    size, mtime = st.st_size, max(st.st_mtime_ns, mtime)  # a re-pointed link changes the link's mtime
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        return Probe(
            size, mtime, None, Reason("symlink_dir", "a link to a directory; directory links are not followed")
        )
    if kind != stat.S_IFREG:
        return Probe(
            size, mtime, None, Reason("not_regular_file", f"a {_KINDS.get(kind, 'special file')}, not a regular file")
        )
    return Probe(size, mtime, real, None)


@dataclass(frozen=True)
class FileRead:
    """A file read whole: what :func:`~selfloop.corpus.analyse.analyse_file` and the store need."""

    loc: Located
    size: int | None
    mtime_ns: int | None
    sha: str
    data: bytes
    fmt: str  # the reader (selfloop.corpus.formats.parse)


def read_file(loc: Located, pr: Probe, readers: dict[str, str], max_file_mb: float) -> FileRead | Reason:
    """The probed file's bytes and hash, or why it is refused (a link or special file, its size).

    Any name is read: whether a file is text is told by its content (``selfloop.corpus.decode``);
    the name only picks the reader.
    """
    if pr.refused is not None or pr.real is None:
        return pr.refused or Reason("unreadable", "unknown")
    limit = int(max_file_mb * 2**20)
    if (pr.size or 0) > limit:
        mib = (pr.size or 0) / 2**20
        return Reason("too_large", f"{mib:.1f} MiB > max_file_mb {max_file_mb}; not read")
    data = read_bytes(pr.real, limit)
    if isinstance(data, Reason):
        return data
    return FileRead(
        loc, pr.size, pr.mtime_ns, hashlib.sha256(data).hexdigest(), data, reader_for(loc.rel.name, readers)
    )


def read_bytes(real: Path, limit: int) -> bytes | Reason:
    """The file's bytes, or why they could not be read. Reads at most ``limit + 1`` bytes."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        return Reason("unreadable", e.strerror or str(e))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Reason("not_regular_file", "changed into a special file while being read")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            return Reason("too_large", f"grew past {limit} bytes while being read")
        return b"".join(chunks)
    except OSError as e:
        return Reason("unreadable", e.strerror or str(e))
    finally:
        os.close(fd)
