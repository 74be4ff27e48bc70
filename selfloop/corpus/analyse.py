"""The CPU part of ingesting one file: bytes to prepared documents with their MinHash signatures.

Covers decoding, parsing by format, normalization, quality filters, content
hashes and the MinHash signature of every document that near-dedup will look at
(:func:`analyse_file`, a pure function of the bytes, the format and the ingest
settings), and :class:`AnalysisPool`, worker processes that run it for a scan
while the scanning process stores results in file order.

Not covered: anything that depends on the corpus already stored (exact and near
duplicates, held-out split of a text seen before) or writes; that is
:mod:`selfloop.ingest.ingestor`, in one process, so decisions do not depend on
how many workers ran.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from rensa import RMinHash

from selfloop.config import IngestConfig
from selfloop.corpus.decode import decode
from selfloop.corpus.dedup import minhashes
from selfloop.corpus.formats import Rejected, parse
from selfloop.corpus.normalize import normalize_newlines
from selfloop.corpus.pipeline import Prepared, prepare
from selfloop.records import Reason
from selfloop.lifeline import ParentWatch


@dataclass(frozen=True)
class Analysed:
    item: Rejected | Prepared
    # The MinHash signature of a document that passes the filters and is near-deduplicated;
    # computed even when the document turns out to be an exact duplicate (rare), so the
    # store never waits. rensa's signatures pickle compactly, so they cross the process
    # boundary as they are.
    minhash: RMinHash | None


def analyse_file(data: bytes, fmt: str, cfg: IngestConfig) -> list[Analysed] | Reason:
    """The documents of one file in file order, or why the whole file is refused."""
    text = decode(data, cfg.max_control_ratio)
    if isinstance(text, Reason):
        return text
    items = list(parse(normalize_newlines(text), fmt, chunk_chars=cfg.chunk_chars, max_json_depth=cfg.max_json_depth))
    if not items:
        # Often a file caught between create and write; examined again once it changes.
        return Reason("empty", "a zero-length file" if not data else "only blank lines or whitespace")
    prepared = [item if isinstance(item, Rejected) else prepare(item, cfg) for item in items]
    # Near-dedup looks at the documents that pass the filters: their signatures in one call.
    wanted = [i for i, p in enumerate(prepared) if isinstance(p, Prepared) and p.drop is None and p.dedup_text is not None]
    sigs = minhashes([prepared[i].dedup_text for i in wanted], num_perm=cfg.minhash_perm, shingle_words=cfg.shingle_words)
    by_item = dict(zip(wanted, sigs, strict=True))
    return [Analysed(p, by_item.get(i)) for i, p in enumerate(prepared)]


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
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with, initargs=(os.getpid(),))
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
