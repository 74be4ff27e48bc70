"""Examine one corpus path before reading it: what it is, where it really points, its size.

Refuses, with a reason and without opening anything: symlinks that leave the
corpus root, symlink loops, broken links, directories reached through a link,
FIFOs, sockets and devices (opening a FIFO would block the daemon), and files over
the size limit. Reading is done with ``O_NONBLOCK | O_NOFOLLOW`` on the resolved
path and re-checked with ``fstat``, so a path swapped for a FIFO between the
check and the read is refused too.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from selfloop.records import Reason


@dataclass(frozen=True)
class Probe:
    size: int | None
    mtime_ns: int | None
    real: Path | None  # resolved path to read; None when refused
    refused: Reason | None


_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


def probe(path: Path, root: Path) -> Probe:
    """``path`` must exist as a directory entry (lstat succeeds); raises FileNotFoundError otherwise."""
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
