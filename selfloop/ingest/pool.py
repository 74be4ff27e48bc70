"""Worker processes that run :func:`~selfloop.corpus.analyse.analyse_file` for a scan, results in file order.

Only the pure CPU part runs in the workers; examining files, dedup decisions and
every write stay with the caller, in path order, so results do not depend on how
many workers ran (:mod:`selfloop.ingest.ingestor`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from selfloop.config import IngestConfig
from selfloop.corpus.analyse import Analysed, analyse_file
from selfloop.ingest.scan import FileRead
from selfloop.lifeline import ParentWatch
from selfloop.records import Reason

log = logging.getLogger(__name__)

Step = TypeVar("Step")


class AnalysisPool:
    """Worker processes running :func:`analyse_file`; the caller consumes futures in its own order.

    Workers come from a fork server that has imported this module once (fork from the
    daemon itself is unsafe: its other threads may hold locks), so starting the pool
    costs about 0.3 s the first time in a process (the server's start and imports) and
    a fork per worker after that. Each worker watches the scanning process and exits
    once it is gone (:func:`_exit_with`), so a kill -9 of the daemon leaves no workers,
    and then no fork server, behind. As with any multiprocessing code, a script that
    scans with workers must guard its top level (``if __name__ == "__main__":``): a
    worker imports the main module, and one that scans again on import dies, after
    which the scan goes on in one process with a warning. selfloop's own entry points
    (the ``selfloop`` command, ``python -m ...``) are guarded.
    """

    def __init__(self, workers: int):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_exit_with, initargs=(os.getpid(),)
        )
        # One trivial call per worker: done once the workers are up (the fork server's start and
        # imports take about 0.3 s), until when the caller does better analysing files itself.
        self._started = [self._pool.submit(os.getpid) for _ in range(workers)]

    def ready(self) -> bool:
        """Whether the workers have started: work submitted before then waits for them."""
        return all(f.done() for f in self._started)

    def submit(self, data: bytes, fmt: str, cfg: IngestConfig) -> Future:
        return self._pool.submit(analyse_file, data, fmt, cfg)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _exit_with(pid: int) -> None:
    """Worker initializer: end this process within about two seconds of ``pid`` ending.

    Nothing else would: a worker is the fork server's child, not the scanning process's,
    and it holds both ends of its own call queue, so it waits for work forever; and the
    fork server lives as long as any process it forked holds its lifeline.
    """
    watch = ParentWatch(pid)

    def run() -> None:
        while watch.alive():
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=run, name="parent-watch", daemon=True).start()


def in_order(
    steps: Iterable[Step | FileRead], cfg: IngestConfig, worth_workers: Callable[[], bool]
) -> Iterator[tuple[Step | FileRead, Future | None]]:
    """Each step, in order, with the future of its analysis when it is a :class:`FileRead` sent to the workers.

    Workers start when ``[ingest] workers`` and the usable CPUs allow more than one and
    ``worth_workers()`` says so. ``steps`` is consumed a few files ahead of what is
    yielded, to keep every worker busy. Files read before the workers are up (their
    start takes about 0.3 s) get no future: the caller analyses them, so a big scan
    never waits for the start.
    """
    pool: AnalysisPool | None = None
    pending: deque[tuple[Step | FileRead, Future | None]] = deque()
    # More analysis processes than CPUs this process may run on only add start-up and pickling.
    workers = min(cfg.workers, _usable_cpus())
    window = 4 * workers  # files read ahead: enough to keep every worker busy
    try:
        if workers > 1 and worth_workers():
            pool = AnalysisPool(workers)
        for step in steps:
            future = None
            # Until the workers are up, files are analysed by the caller, in turn, instead of waiting for them.
            if isinstance(step, FileRead) and pool is not None and pool.ready():
                try:
                    future = pool.submit(step.data, step.fmt, cfg)
                except BrokenProcessPool:  # a worker died: the rest of the scan runs in the caller
                    log.warning("ingest worker processes failed; the scan goes on in one process")
                    pool.close()
                    pool = None
            pending.append((step, future))
            # Read ahead only to keep workers busy: a file the caller analyses is done when its turn comes.
            while pending and (len(pending) > window or pending[0][1] is None):
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        if pool is not None:
            pool.close()


def analysis(read: FileRead, future: Future | None, cfg: IngestConfig) -> list[Analysed] | Reason:
    """The result of ``future``, or the file analysed here when it has none or its worker died."""
    if future is not None:
        try:
            return future.result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): analyse here instead
            log.warning("ingest worker process died; analysing %s in the scanning process", read.loc.key)
    return analyse_file(read.data, read.fmt, cfg)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
