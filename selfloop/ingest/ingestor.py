"""Ingest: corpus files to documents in the state store, one file per transaction.

Covers startup reconciliation (:meth:`Ingestor.scan`: new and changed files are
(re)ingested, deleted ones marked removed, unchanged ones skipped by
size + mtime_ns, then sha256), single files for the watcher
(:meth:`Ingestor.ingest_path`), exact and near deduplication against the corpus
(also offered to the judge as :meth:`Ingestor.is_duplicate`), and the
``selfloop ingest`` command. The per-file CPU work (decode, parse, filters,
MinHash) is :func:`selfloop.corpus.analyse.analyse_file`; with ``[ingest] workers``
above 1 a big scan runs it in worker processes, while reading the store, dedup
decisions and every write stay here, in path order.

Guarantees: nothing under the corpus roots is ever written, moved or deleted; a
bad file becomes a ``quarantined`` row in ``files`` with its reason (and is
examined again once it changes); dropped and duplicate documents are stored with
their reason for inspection. An Ingestor is used from one thread at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rensa import RMinHash

from selfloop.config import IngestConfig, ProjectPaths, WatchConfig
from selfloop.corpus.analyse import Analysed, AnalysisPool, analyse_file
from selfloop.corpus.dedup import HASH_SCHEME, NearDupIndex, from_bytes, minhashes, signature, to_bytes
from selfloop.corpus.formats import ChatRecord, Rejected, TaskItem, TextRecord, parse_json_line
from selfloop.corpus.pipeline import Prepared, content_hash, dedup_text_of, prepare
from selfloop.errors import SelfloopError
from selfloop.ingest.locate import Located, is_ignored, locate, roots
from selfloop.ingest.probe import probe, read_bytes
from selfloop.records import Reason, TaskRecord, split_of
from selfloop.store import Store

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    key: str  # "orig/a.txt"; the path as given when outside the corpus
    origin: str | None
    status: str  # ingested | quarantined | removed | unchanged | ignored
    reason: str | None = None
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason code, duplicates included

    def summary(self) -> str:
        text = f"{self.status}, {self.accepted} accepted"
        if self.dropped:
            text += ", dropped " + ", ".join(f"{k} {v}" for k, v in self.dropped.most_common())
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass
class IngestReport:
    files: int = 0
    ingested: int = 0
    unchanged: int = 0
    removed: int = 0
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    quarantined: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.files} files ({self.ingested} ingested, {self.unchanged} unchanged, {self.removed} removed, "
            f"{len(self.quarantined)} quarantined), {self.accepted} documents accepted"
        )
        if self.dropped:
            text += ", dropped " + ", ".join(f"{k} {v}" for k, v in self.dropped.most_common())
        return text

    def add(self, r: FileResult) -> None:
        if r.status == "ignored":
            return
        if r.status != "removed":
            self.files += 1
        if r.status == "ingested":
            self.ingested += 1
        elif r.status == "unchanged":
            self.unchanged += 1
        elif r.status == "removed":
            self.removed += 1
        elif r.status == "quarantined":
            self.quarantined.append((r.key, r.reason or ""))
        self.accepted += r.accepted
        self.dropped.update(r.dropped)


@dataclass(frozen=True)
class _Read:
    """A file read and found new or changed: what :func:`analyse_file` and the store need."""

    loc: Located
    size: int | None
    mtime_ns: int | None
    sha: str
    data: bytes
    fmt: str


# What examining a path leads to: a write (or nothing) to run in file order, or a read to analyse.
_Step = Callable[[], FileResult] | _Read


@dataclass
class _Known:
    """What the store holds of one content hash, while a file's documents go in."""

    split: str  # of its first row, whatever that row's status: a text keeps its split
    active: tuple[int, str, str] | None = None  # (id, file_path, locator) of its first active row


def _note(known: dict[str, _Known], digest: str, split: str, status: str, row: tuple[int, str, str]) -> None:
    """Add one row (in id order) to what is known of its hash."""
    seen = known.get(digest)
    if seen is None:
        known[digest] = seen = _Known(split)
    if status == "active" and seen.active is None:
        seen.active = row


class _Undo:
    """In-memory index changes made inside a transaction, undone if it rolls back."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def __call__(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def run(self) -> None:
        for step in reversed(self.steps):
            step()


class Ingestor:
    def __init__(self, cfg: IngestConfig, watch: WatchConfig, paths: ProjectPaths, store: Store):
        self.cfg = cfg
        self.watch = watch
        self.paths = paths
        self.store = store
        self._exts = {e.lower() for e in cfg.extensions}
        self._index = NearDupIndex(threshold=cfg.near_dup_threshold, num_perm=cfg.minhash_perm)
        self._load_index()

    # ----------------------------------------------------------------- public

    def scan(self) -> IngestReport:
        """Reconcile the store with both corpus roots; each file in its own transaction."""
        for origin, root in roots(self.paths).items():
            if not root.is_dir():
                if origin == "orig":
                    raise SelfloopError(f"corpus directory {root} does not exist (create it, or fix [paths] orig)")
                root.mkdir(parents=True, exist_ok=True)  # rework/ is selfloop's own
        report = IngestReport()
        seen: set[str] = set()
        paths = list(self._walk())
        last = 0.0
        for i, result in enumerate(self._ingest_all(paths)):
            seen.add(result.key)
            report.add(result)
            if time.monotonic() - last > 0.5:  # progress for the dashboard, at most twice a second
                self.store.set_progress("ingest", i + 1, len(paths), "files")
                last = time.monotonic()
        for row in self.store.query("SELECT path FROM files WHERE status != 'removed' ORDER BY path"):
            if row["path"] not in seen:
                report.add(self._remove(row["path"]))
        self.store.clear_progress("ingest")
        return report

    def ingest_path(self, path: Path | str) -> FileResult:
        """(Re)ingest, quarantine or mark removed one path under orig/ or rework/."""
        step = self._examine(path)
        if isinstance(step, _Read):
            return self._finish(step, analyse_file(step.data, step.fmt, self.cfg))
        return step()

    def is_duplicate(self, content: str, kind: str = "text") -> str | None:
        """Why ``content`` duplicates an active document (exactly or nearly), or None. Stores nothing.

        ``kind`` is ``text`` (plain text), or ``chat`` / ``task`` (one JSON record as in JSONL).
        """
        record: TextRecord | ChatRecord | TaskItem
        if kind == "text":
            record = TextRecord("candidate", content)
        else:
            parsed = parse_json_line(content, max_json_depth=self.cfg.max_json_depth)
            if kind == "task" and isinstance(parsed, TaskRecord):
                record = TaskItem("candidate", parsed)
            elif kind == "chat" and isinstance(parsed, tuple):
                record = ChatRecord("candidate", parsed)
            else:
                raise ValueError(
                    f"not a {kind} record: {parsed if isinstance(parsed, Reason) else type(parsed).__name__}"
                )
        p = prepare(record, self.cfg)
        reason, _, _ = self._find_duplicate(p.hash, p.dedup_text)
        return None if reason is None else str(reason)

    # ----------------------------------------------------------------- one file

    def _ingest_all(self, paths: list[Path]) -> Iterator[FileResult]:
        """``ingest_path`` of each path, in order; analysis runs in worker processes once a scan is big enough.

        Reading runs ahead of storing by a few files. Files read before the workers are
        up (their start takes about 0.3 s) are analysed here, so a big scan never waits
        for it. Everything that reads or writes the corpus in the store, and the near-dup
        index, stays here and in path order, so results are those of a serial scan.
        """
        pool: AnalysisPool | None = None
        pending: deque[tuple[_Step, Future | None]] = deque()
        # More analysis processes than CPUs this process may run on only add start-up and pickling.
        workers = min(self.cfg.workers, _usable_cpus())
        window = 4 * workers  # files read ahead: enough to keep every worker busy
        try:
            if workers > 1 and self._enough_changed(paths, self.cfg.parallel_min_mb * 2**20):
                pool = AnalysisPool(workers)
            for path in paths:
                step = self._examine(path)
                future = None
                # Until the workers are up, files are analysed here, in turn, instead of waiting for them.
                if isinstance(step, _Read) and pool is not None and pool.ready():
                    try:
                        future = pool.submit(step.data, step.fmt, self.cfg)
                    except BrokenProcessPool:  # a worker died: the rest of the scan runs here
                        log.warning("ingest worker processes failed; the scan goes on in one process")
                        pool.close()
                        pool = None
                pending.append((step, future))
                # Read ahead only to keep workers busy: a file analysed here is done when its turn comes.
                while pending and (len(pending) > window or pending[0][1] is None):
                    yield self._complete(*pending.popleft())
            while pending:
                yield self._complete(*pending.popleft())
        finally:
            if pool is not None:
                pool.close()

    def _enough_changed(self, paths: list[Path], enough: float) -> bool:
        """Whether the files of ``paths`` that are new or changed (by size and mtime) hold ``enough`` bytes."""
        known = {
            r["path"]: (r["size"], r["mtime_ns"])
            for r in self.store.query("SELECT path, size, mtime_ns FROM files WHERE status != 'removed'")
        }
        total = 0
        for path in paths:
            loc = locate(path, self.paths)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if loc is not None and stat.S_ISREG(st.st_mode) and known.get(loc.key) != (st.st_size, st.st_mtime_ns):
                total += st.st_size
                if total >= enough:
                    return True
        return False

    def _complete(self, step: _Step, future: Future | None) -> FileResult:
        if not isinstance(step, _Read):
            return step()
        analysis = None
        if future is not None:
            try:
                analysis = future.result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): analyse here instead
                log.warning("ingest worker process died; analysing %s in the scanning process", step.loc.key)
        if analysis is None:
            analysis = analyse_file(step.data, step.fmt, self.cfg)
        return self._finish(step, analysis)

    def _examine(self, path: Path | str) -> _Step:
        """Everything up to reading a new or changed file; whatever would be written is deferred."""
        loc = locate(path, self.paths)
        if loc is None:
            return lambda: FileResult(str(path), None, "ignored", "outside the corpus roots")
        if is_ignored(loc.rel, self.watch.ignore):
            return lambda: FileResult(loc.key, loc.origin, "ignored", "matches watch.ignore")
        full = loc.root / loc.rel
        try:
            if stat.S_ISDIR(full.lstat().st_mode):
                return lambda: FileResult(loc.key, loc.origin, "ignored", "a directory")
            return self._read_file(loc, full)
        except FileNotFoundError:
            return lambda: self._remove(loc.key)
        except OSError as e:
            reason = Reason("unreadable", e.strerror or str(e))
            return lambda: self._quarantine(loc, None, None, reason)

    def _read_file(self, loc: Located, full: Path) -> _Step:
        pr = probe(full, loc.root)
        row = self._file_row(loc.key)
        if row is not None and row["status"] != "removed" and (row["size"], row["mtime_ns"]) == (pr.size, pr.mtime_ns):
            return lambda: FileResult(loc.key, loc.origin, "unchanged", row["reason"])
        if pr.refused is not None or pr.real is None:
            refused = pr.refused or Reason("unreadable", "unknown")
            return lambda: self._quarantine(loc, pr.size, pr.mtime_ns, refused)
        ext = full.suffix.lower()
        if ext not in self._exts:
            allowed = ", ".join(sorted(self._exts))
            return lambda: self._quarantine(
                loc, pr.size, pr.mtime_ns, Reason("unsupported_type", f"{ext or 'no extension'} (ingested: {allowed})")
            )
        limit = int(self.cfg.max_file_mb * 2**20)
        if (pr.size or 0) > limit:
            mib = (pr.size or 0) / 2**20
            return lambda: self._quarantine(
                loc,
                pr.size,
                pr.mtime_ns,
                Reason("too_large", f"{mib:.1f} MiB > max_file_mb {self.cfg.max_file_mb}; not read"),
            )
        data = read_bytes(pr.real, limit)
        if isinstance(data, Reason):
            return lambda: self._quarantine(loc, pr.size, pr.mtime_ns, data)
        sha = hashlib.sha256(data).hexdigest()
        if row is not None and row["status"] == "ingested" and row["sha256"] == sha:
            return lambda: self._touch(loc, pr.size, pr.mtime_ns)
        return _Read(loc, pr.size, pr.mtime_ns, sha, data, ext[1:])

    def _touch(self, loc: Located, size: int | None, mtime_ns: int | None) -> FileResult:
        with self.store.tx() as c:  # touched, not changed
            c.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, updated_at = ? WHERE path = ?",
                (size, mtime_ns, time.time(), loc.key),
            )
        return FileResult(loc.key, loc.origin, "unchanged")

    def _finish(self, read: _Read, analysis: list[Analysed] | Reason) -> FileResult:
        if isinstance(analysis, Reason):
            return self._quarantine(read.loc, read.size, read.mtime_ns, analysis, read.sha)
        return self._store_file(read.loc, read.fmt, analysis, read.size, read.mtime_ns, read.sha)

    def _store_file(
        self, loc: Located, fmt: str, items: list[Analysed], size: int | None, mtime_ns: int | None, sha: str
    ) -> FileResult:
        result = FileResult(loc.key, loc.origin, "ingested")
        undo = _Undo()
        try:
            with self.store.tx() as c:
                retired = self._retire(c, loc.key, undo)
                # One query for what the store knows of every hash in the file, instead of
                # two per document; kept up to date below as this file's rows go in.
                known = self._known(c, [a.item.hash for a in items if isinstance(a.item, Prepared)])
                for analysed in items:
                    p = analysed.item
                    if isinstance(p, Rejected):
                        self._insert(
                            c, loc, fmt, p.locator, "raw", p.raw, content_hash(p.raw), "dropped", p.reason, None
                        )
                        result.dropped[p.reason.code] += 1
                        continue
                    seen = known.get(p.hash)
                    split = seen.split if seen is not None else split_of(p.split_key, self.cfg.heldout_fraction)
                    if p.drop is not None:
                        status, reason = "dropped", p.drop
                        doc_id = self._insert_prepared(c, loc, fmt, p, split, status, reason)
                    else:
                        sig = analysed.minhash
                        if seen is not None and seen.active is not None:
                            reason, target = self._exact_reason(*seen.active), seen.active[0]
                        else:
                            reason, target, _ = self._near_duplicate(p.dedup_text, sig)
                        status = "active" if reason is None else "duplicate"
                        doc_id = self._insert_prepared(
                            c,
                            loc,
                            fmt,
                            p,
                            split,
                            status,
                            reason,
                            dup_of=target,
                            minhash=None if reason is not None or sig is None else to_bytes(sig),
                        )
                        if reason is None and sig is not None:
                            self._index_add(doc_id, sig, undo)
                    _note(known, p.hash, split, status, (doc_id, loc.key, p.locator))
                    if reason is None:
                        result.accepted += 1
                    else:
                        result.dropped[reason.code] += 1
                self._revive(c, retired, undo)
                n_dropped = sum(result.dropped.values())
                self._upsert_file(c, loc, size, mtime_ns, sha, "ingested", None, result.accepted, n_dropped)
                self.store.event(
                    "ingested",
                    f"{loc.key}: {result.accepted} accepted, {n_dropped} dropped",
                    path=loc.key,
                    accepted=result.accepted,
                    dropped=dict(result.dropped),
                )
        except BaseException:
            undo.run()
            raise
        log.info("ingested %s: %d accepted, %d dropped", loc.key, result.accepted, sum(result.dropped.values()))
        return result

    def _quarantine(
        self, loc: Located, size: int | None, mtime_ns: int | None, reason: Reason, sha: str | None = None
    ) -> FileResult:
        undo = _Undo()
        try:
            with self.store.tx() as c:
                self._revive(c, self._retire(c, loc.key, undo), undo)
                self._upsert_file(c, loc, size, mtime_ns, sha, "quarantined", str(reason), 0, 0)
                self.store.event("quarantined", f"{loc.key}: {reason}", path=loc.key, reason=str(reason))
        except BaseException:
            undo.run()
            raise
        log.warning("quarantined %s: %s", loc.key, reason)
        return FileResult(loc.key, loc.origin, "quarantined", str(reason))

    def _remove(self, key: str) -> FileResult:
        """Mark a deleted file (or every known file under a deleted directory) removed with its documents."""
        prefix = key + "/"
        keys = [
            r["path"]
            for r in self.store.query(
                "SELECT path FROM files WHERE status != 'removed' AND (path = ? OR substr(path, 1, ?) = ?)",
                (key, len(prefix), prefix),
            )
        ]
        origin = key.split("/", 1)[0]
        if not keys:
            return FileResult(key, origin, "ignored", "not in the corpus")
        undo = _Undo()
        try:
            with self.store.tx() as c:
                retired: list[int] = []
                for k in keys:
                    retired += self._retire(c, k, undo)
                    c.execute(
                        "UPDATE files SET status = 'removed', reason = 'deleted', n_docs = 0, updated_at = ? WHERE path = ?",
                        (time.time(), k),
                    )
                    self.store.event("removed", f"{k}: deleted", path=k)
                self._revive(c, retired, undo)
        except BaseException:
            undo.run()
            raise
        log.info("removed %s (%d file(s))", key, len(keys))
        return FileResult(
            key, origin, "removed", "deleted" if keys == [key] else f"deleted directory ({len(keys)} files)"
        )

    # ----------------------------------------------------------------- documents

    def _retire(self, c, key: str, undo: _Undo) -> list[int]:
        """Mark a file's current documents removed; returns their ids."""
        ids = [r[0] for r in c.execute("SELECT id FROM documents WHERE file_path = ? AND status != 'removed'", (key,))]
        c.execute(
            "UPDATE documents SET status = 'removed', updated_at = ? WHERE file_path = ? AND status != 'removed'",
            (time.time(), key),
        )
        for doc_id in ids:
            sig = self._index.remove(doc_id)
            if sig is not None:
                undo(lambda doc_id=doc_id, sig=sig: self._index.add(doc_id, sig))
        return ids

    def _revive(self, c, removed: list[int], undo: _Undo) -> None:
        """Duplicates of removed documents are checked again: the text stays in the corpus once."""
        if not removed:
            return
        marks = ",".join("?" * len(removed))
        rows = c.execute(
            f"SELECT id, kind, hash, content FROM documents WHERE status = 'duplicate' AND dup_of IN ({marks}) ORDER BY id",
            removed,
        ).fetchall()
        now = time.time()
        for row in rows:
            text = dedup_text_of(row["kind"], row["content"])
            reason, target, sig = self._find_duplicate(row["hash"], text)
            if reason is not None:
                c.execute(
                    "UPDATE documents SET reason = ?, dup_of = ?, updated_at = ? WHERE id = ?",
                    (str(reason), target, now, row["id"]),
                )
                continue
            if text is not None and sig is None:
                sig = self._signature(text)
            c.execute(
                "UPDATE documents SET status = 'active', reason = NULL, dup_of = NULL, minhash = ?, updated_at = ? WHERE id = ?",
                (None if sig is None else to_bytes(sig), now, row["id"]),
            )
            if sig is not None:
                self._index_add(row["id"], sig, undo)

    def _find_duplicate(self, digest: str, text: str | None) -> tuple[Reason | None, int | None, RMinHash | None]:
        """(reason, duplicated doc id, signature of ``text`` if it was computed on the way) — reason None when unique.

        For one document at a time (the judge's question, revived duplicates); a file's
        documents are checked against one lookup of all their hashes in ``_store_file``.
        """
        row = self.store.conn.execute(
            "SELECT id, file_path, locator FROM documents WHERE hash = ? AND status = 'active' ORDER BY id LIMIT 1",
            (digest,),
        ).fetchone()
        if row is not None:
            return self._exact_reason(row["id"], row["file_path"], row["locator"]), row["id"], None
        return self._near_duplicate(text, None)

    @staticmethod
    def _exact_reason(doc_id: int, file_path: str, locator: str) -> Reason:
        return Reason("exact_duplicate", f"same as doc {doc_id} ({file_path} {locator})")

    def _near_duplicate(
        self, text: str | None, sig: RMinHash | None
    ) -> tuple[Reason | None, int | None, RMinHash | None]:
        if text is None:
            return None, None, None
        if sig is None:
            sig = self._signature(text)
        match = self._index.best_match(sig)
        if match is None:
            return None, None, sig
        doc_id, jaccard = match
        where = self.store.conn.execute("SELECT file_path, locator FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return (
            Reason(
                "near_duplicate", f"~{jaccard:.2f} Jaccard with doc {doc_id} ({where['file_path']} {where['locator']})"
            ),
            doc_id,
            sig,
        )

    def _insert_prepared(
        self,
        c,
        loc: Located,
        fmt: str,
        p: Prepared,
        split: str,
        status: str,
        reason: Reason | None,
        *,
        dup_of: int | None = None,
        minhash: bytes | None = None,
    ) -> int:
        return self._insert(
            c, loc, fmt, p.locator, p.kind, p.content, p.hash, status, reason, split, dup_of=dup_of, minhash=minhash
        )

    def _insert(
        self,
        c,
        loc: Located,
        fmt: str,
        locator: str,
        kind: str,
        content: str,
        digest: str,
        status: str,
        reason: Reason | None,
        split: str | None,
        *,
        dup_of: int | None = None,
        minhash: bytes | None = None,
    ) -> int:
        now = time.time()
        cur = c.execute(
            "INSERT INTO documents (file_path, locator, origin, kind, format, hash, content, n_chars, split, status, reason,"
            " minhash, dup_of, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                loc.key,
                locator,
                loc.origin,
                kind,
                fmt,
                digest,
                content,
                len(content),
                split or split_of(digest, self.cfg.heldout_fraction),
                status,
                None if reason is None else str(reason),
                minhash,
                dup_of,
                now,
                now,
            ),
        )
        return int(cur.lastrowid)

    @staticmethod
    def _known(c, digests: list[str]) -> dict[str, _Known]:
        """For each of ``digests`` the store has a row of: the split of its first row, and its first active row.

        A text seen before keeps its split, even if heldout_fraction has changed since.
        """
        known: dict[str, _Known] = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), 500):  # well under SQLite's limit on bound parameters
            chunk = unique[start : start + 500]
            rows = c.execute(
                f"SELECT hash, id, file_path, locator, split, status FROM documents WHERE hash IN ({','.join('?' * len(chunk))})"
                " ORDER BY id",
                chunk,
            )
            for digest, doc_id, file_path, locator, split, status in rows:
                _note(known, digest, split, status, (doc_id, file_path, locator))
        return known

    def _upsert_file(
        self, c, loc: Located, size, mtime_ns, sha, status: str, reason: str | None, n_docs: int, n_dropped: int
    ) -> None:
        c.execute(
            "INSERT INTO files (path, origin, size, mtime_ns, sha256, status, reason, n_docs, n_dropped, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET origin = excluded.origin,"
            " size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, status = excluded.status,"
            " reason = excluded.reason, n_docs = excluded.n_docs, n_dropped = excluded.n_dropped, updated_at = excluded.updated_at",
            (loc.key, loc.origin, size, mtime_ns, sha, status, reason, n_docs, n_dropped, time.time()),
        )

    def _file_row(self, key: str):
        rows = self.store.query("SELECT * FROM files WHERE path = ?", (key,))
        return rows[0] if rows else None

    # ----------------------------------------------------------------- near-dup index

    def _signature(self, text: str):
        return signature(text, num_perm=self.cfg.minhash_perm, shingle_words=self.cfg.shingle_words)

    def _index_add(self, doc_id: int, sig, undo: _Undo) -> None:
        self._index.add(doc_id, sig)
        undo(lambda: self._index.remove(doc_id))

    def _load_index(self) -> None:
        """Build the LSH index from stored signatures; recompute those made with other MinHash settings.

        The settings include the hash scheme: a database written by an older selfloop
        (SHA-1 per shingle) has its signatures recomputed from the stored texts once, on
        the first open, instead of comparing signatures of two schemes.
        """
        params = f"perm={self.cfg.minhash_perm} shingle={self.cfg.shingle_words} hash={HASH_SCHEME}"
        same_params = self.store.get_meta("corpus.minhash_params") == params
        stale: list[int] = []
        # Texts are read only for signatures that must be recomputed: every cycle opens an
        # Ingestor, and reading the whole stored corpus each time would be wasted I/O.
        for row in self.store.query(
            "SELECT id, minhash FROM documents WHERE status = 'active' AND kind IN ('text', 'chat')"
        ):
            if not same_params or row["minhash"] is None:
                stale.append(row["id"])
                continue
            try:
                self._index.add(row["id"], from_bytes(row["minhash"], self.cfg.minhash_perm))
            except ValueError:  # damaged, or another rensa state version / number of permutations
                stale.append(row["id"])
        fresh: list[tuple[bytes, int]] = []
        for start in range(0, len(stale), 512):  # signatures in batches: one rensa call each
            ids = stale[start : start + 512]
            marks = ",".join("?" * len(ids))
            texts = {
                r["id"]: dedup_text_of(r["kind"], r["content"]) or ""
                for r in self.store.query(f"SELECT id, kind, content FROM documents WHERE id IN ({marks})", tuple(ids))
            }
            sigs = minhashes(
                [texts[i] for i in ids], num_perm=self.cfg.minhash_perm, shingle_words=self.cfg.shingle_words
            )
            for doc_id, sig in zip(ids, sigs, strict=True):
                fresh.append((to_bytes(sig), doc_id))
                self._index.add(doc_id, sig)
        if fresh:
            with self.store.tx() as c:
                c.executemany("UPDATE documents SET minhash = ? WHERE id = ?", fresh)
        if not same_params:
            self.store.set_meta("corpus.minhash_params", params)

    # ----------------------------------------------------------------- walking

    def _walk(self) -> Iterator[Path]:
        """Every non-ignored entry that is not a real directory, in a stable order; links are not followed."""
        for root in roots(self.paths).values():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=self._walk_error):
                base = Path(dirpath)
                keep = []
                for d in sorted(dirnames):
                    if is_ignored(PurePosixPath(d), self.watch.ignore):
                        continue
                    if (base / d).is_symlink():
                        yield base / d  # quarantined as a directory link
                    else:
                        keep.append(d)
                dirnames[:] = keep
                for name in sorted(filenames):
                    yield base / name

    @staticmethod
    def _walk_error(err: OSError) -> None:
        log.warning("cannot list %s: %s", err.filename, err.strerror)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
