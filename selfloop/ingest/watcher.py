"""Watch orig/ and rework/ and hand over paths only once they are settled.

Event handlers only record (path, time); ``SettledQueue`` releases a path once it is known complete, so a file still
being written is never handed over half written. Deleted paths are handed over too (ingest marks them removed).
watchdog's inotify observer, or polling when configured or inotify limits are exhausted.

Does not cover: ingesting (the daemon passes drained paths to ``Ingestor.ingest_path``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from selfloop.config import ProjectPaths, WatchConfig
from selfloop.errors import SelfloopError
from selfloop.ingest.scan import is_ignored, locate

log = logging.getLogger(__name__)

Signature = tuple[int, int] | None  # (size, mtime_ns); None when the path is gone


def stat_signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Pending:
    last_event: float
    complete: bool  # a close-after-write, moved-in or deleted event was the latest news
    sig: Signature
    since: float  # when sig was last seen to change


class SettledQueue:
    """Debounces events per path and releases settled paths. Thread-safe; clock and stat are injectable.

    A path is released once no event has arrived for ``debounce_s`` and the file is known
    complete: either a close-after-write or moved-in event was seen (the writer is done,
    or an atomic rename put the file in place), or its size and mtime have stayed the
    same for ``settle_s`` (polling, or writers that never close). A file that is still
    being written keeps producing events and changing size, so it is never handed over.
    """

    def __init__(
        self,
        *,
        settle_s: float,
        debounce_s: float,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[Path], Signature] = stat_signature,
    ):
        self.settle_s = settle_s
        self.debounce_s = debounce_s
        self._clock = clock
        self._stat = stat
        self._pending: dict[Path, _Pending] = {}
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def push(self, path: Path, *, complete: bool = False) -> None:
        now = self._clock()
        sig = self._stat(path)
        with self._cond:
            self._pending[path] = _Pending(now, complete, sig, now)
            self._cond.notify_all()

    def pop_ready(self) -> list[Path]:
        now = self._clock()
        ready = []
        with self._cond:
            for path, p in list(self._pending.items()):
                if now - p.last_event < self.debounce_s:
                    continue
                sig = self._stat(path)
                if sig != p.sig:  # changed without an event reaching us (yet): start settling again
                    p.sig, p.since, p.complete = sig, now, False
                if p.complete or now - p.since >= self.settle_s:
                    ready.append(path)
                    del self._pending[path]
        return sorted(ready)

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


class _Handler(FileSystemEventHandler):
    def __init__(self, accept: Callable[[str], bool], queue: SettledQueue):
        self.accept = accept
        self.queue = queue

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        complete = kind in ("closed", "deleted", "moved")
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if path and self.accept(path):
                self.queue.push(Path(path), complete=complete)


ObserverFactory = Callable[[], BaseObserver]


class CorpusWatcher:
    """Watches both corpus roots recursively; :meth:`drain` returns settled paths (files or deleted paths).

    Uses watchdog's inotify ``Observer``, or ``PollingObserver`` when ``watch.polling`` is
    set or inotify limits are exhausted (ENOSPC / EMFILE), which is logged.
    """

    def __init__(self, paths: ProjectPaths, cfg: WatchConfig, *, observer_factory: ObserverFactory = Observer):
        self.paths = paths
        self.cfg = cfg
        self.queue = SettledQueue(settle_s=cfg.settle_s, debounce_s=cfg.debounce_s)
        self._factory = observer_factory
        self._observer: BaseObserver | None = None
        self.backend = ""

    def start(self) -> None:
        if not self.paths.orig.is_dir():
            raise SelfloopError(f"corpus directory {self.paths.orig} does not exist (create it, or fix [paths] orig)")
        self.paths.rework.mkdir(parents=True, exist_ok=True)
        if self.cfg.polling:
            self._start(PollingObserver(timeout=self.cfg.poll_interval_s), "polling")
            return
        try:
            self._start(self._factory(), "inotify")
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EMFILE, errno.ENFILE):
                raise
            log.warning(
                "inotify limit reached (%s); watching by polling every %.1fs instead. Raise "
                "fs.inotify.max_user_watches / max_user_instances to get instant events.",
                e.strerror or e,
                self.cfg.poll_interval_s,
            )
            self._start(PollingObserver(timeout=self.cfg.poll_interval_s), "polling")

    def _start(self, observer: BaseObserver, backend: str) -> None:
        handler = _Handler(self._accept, self.queue)
        try:
            for root in (self.paths.orig, self.paths.rework):
                observer.schedule(handler, str(root), recursive=True)
            observer.start()
        except BaseException:
            observer.unschedule_all()
            raise
        self._observer, self.backend = observer, backend
        log.info("watching %s and %s (%s)", self.paths.orig, self.paths.rework, backend)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def _accept(self, path: str) -> bool:
        loc = locate(path, self.paths)
        return loc is not None and not is_ignored(loc.rel, self.cfg.ignore)

    def drain(self, timeout: float) -> list[Path]:
        """Wait up to ``timeout`` seconds for settled paths; returns them (possibly none).

        A settled directory (moved in whole) is expanded into its files.
        """
        deadline = time.monotonic() + timeout
        while True:
            ready = self.queue.pop_ready()
            if ready:
                return self._expand(ready)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.queue.wait(min(remaining, 0.1))

    def _expand(self, ready: list[Path]) -> list[Path]:
        out: list[Path] = []
        for path in ready:
            if path.is_dir() and not path.is_symlink():
                for dirpath, _dirs, files in os.walk(path):
                    out.extend(p for p in (Path(dirpath, f) for f in sorted(files)) if self._accept(str(p)))
            else:
                out.append(path)
        return out

    def __enter__(self) -> "CorpusWatcher":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
