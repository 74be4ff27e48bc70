"""Ingest: corpus files to documents in the state store, one file per transaction.

Covers startup reconciliation (``Ingestor.scan``), single files for the watcher (``ingest_path``), the decisions on
each document (exact and near duplicates, held-out split) and storing them, and ``selfloop ingest``. Reading files
is ``selfloop.ingest.scan``, per-file CPU work ``selfloop.corpus.analyse`` (in worker processes for a big scan),
the SQL ``selfloop.store.corpus``; dedup decisions and every write stay here, in path order.

Guarantees: nothing under the corpus roots is ever written, moved or deleted; a bad file becomes a ``quarantined``
row with its reason (examined again once it changes, or by the first scan under other ingest settings); dropped
and duplicate documents are stored with their reason.
"""

from __future__ import annotations

import logging
import stat
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from rensa import RMinHash

from selfloop.config import IngestConfig, ProjectPaths, WatchConfig
from selfloop.corpus.analyse import Analysed
from selfloop.corpus.dedup import HASH_SCHEME, NearDupIndex, from_bytes, minhashes, signature, to_bytes
from selfloop.corpus.formats import ChatRecord, Rejected, TaskItem, TextRecord, parse_json_line
from selfloop.corpus.pipeline import Prepared, content_hash, dedup_text_of, prepare
from selfloop.ingest.pool import analysis, in_order
from selfloop.ingest.scan import (
    FileRead,
    Located,
    enough_changed,
    ensure_roots,
    is_ignored,
    is_pairs,
    locate,
    probe,
    read_file,
    walk,
)
from selfloop.records import Reason, TaskRecord, split_of
from selfloop.store import Store
from selfloop.store import corpus as corpus_store

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


# What examining a path leads to: a write (or nothing) to run in file order, or a file read to analyse.
_Step = Callable[[], FileResult] | FileRead


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
    """The ingester of one project; used from one thread at a time."""

    def __init__(self, cfg: IngestConfig, watch: WatchConfig, paths: ProjectPaths, store: Store):
        self.cfg = cfg
        self.watch = watch
        self.paths = paths
        self.store = store
        # Quarantined files are examined again by the first scan under other settings (a reader, a limit).
        self._settings = content_hash(cfg.model_dump_json(exclude={"workers", "parallel_min_mb"}))
        self._recheck = store.get_meta("ingest.settings") != self._settings
        self._index = NearDupIndex(threshold=cfg.near_dup_threshold, num_perm=cfg.minhash_perm)
        self._load_index()

    # ----------------------------------------------------------------- public

    def scan(self) -> IngestReport:
        """Reconcile the store with both corpus roots; each file in its own transaction.

        New and changed files are (re)ingested, deleted ones marked removed, unchanged ones
        skipped by size + mtime_ns, then sha256.
        """
        ensure_roots(self.paths)
        report = IngestReport()
        seen: set[str] = set()
        paths = list(walk(self.paths, self.watch.ignore))
        enough = self.cfg.parallel_min_mb * 2**20

        def worth_workers() -> bool:
            return enough_changed(paths, self.paths, corpus_store.file_stats(self.store), enough)

        last = 0.0
        # Closed on the way out, an error included: the worker processes end with the scan.
        with closing(in_order((self._examine(p) for p in paths), self.cfg, worth_workers)) as steps:
            for i, (step, future) in enumerate(steps):
                result = self._complete(step, future)
                seen.add(result.key)
                report.add(result)
                if time.monotonic() - last > 0.5:  # progress for the dashboard, at most twice a second
                    self.store.set_progress("ingest", i + 1, len(paths), "files")
                    last = time.monotonic()
        for key in corpus_store.tracked_files(self.store):
            if key not in seen:
                report.add(self._remove(key))
        if self._recheck:
            self.store.set_meta("ingest.settings", self._settings)
            self._recheck = False
        self.store.clear_progress("ingest")
        return report

    def ingest_path(self, path: Path | str) -> FileResult:
        """(Re)ingest, quarantine or mark removed one path under orig/ or rework/."""
        return self._complete(self._examine(path), None)

    def is_duplicate(self, content: str, kind: str = "text") -> str | None:
        """Why ``content`` duplicates an active document (exactly or nearly), or None. Stores nothing.

        ``kind`` is ``text`` (plain text), or ``chat`` / ``task`` (one JSON record as in JSONL).
        """
        record: TextRecord | ChatRecord | TaskItem
        if kind == "text":
            record = TextRecord("candidate", content)
        else:
            parsed = parse_json_line(content, max_json_depth=self.cfg.max_json_depth, fields=self.cfg.json_fields)
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

    def _examine(self, path: Path | str) -> _Step:
        """Everything up to reading a new or changed file; whatever would be written is deferred."""
        loc = locate(path, self.paths)
        if loc is None:
            return lambda: FileResult(str(path), None, "ignored", "outside the corpus roots")
        if is_ignored(loc.rel, self.watch.ignore):
            return lambda: FileResult(loc.key, loc.origin, "ignored", "matches watch.ignore")
        if is_pairs(loc):
            return lambda: FileResult(loc.key, loc.origin, "ignored", "preference pairs (trained by DPO)")
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
        row = corpus_store.file_row(self.store, loc.key)
        if (
            row is not None
            and row["status"] != "removed"
            and (row["size"], row["mtime_ns"]) == (pr.size, pr.mtime_ns)
            and not (self._recheck and row["status"] == "quarantined")
        ):
            return lambda: FileResult(loc.key, loc.origin, "unchanged", row["reason"])
        read = read_file(loc, pr, self.cfg.readers, self.cfg.max_file_mb)
        if isinstance(read, Reason):
            return lambda: self._quarantine(loc, pr.size, pr.mtime_ns, read)
        if row is not None and row["status"] == "ingested" and row["sha256"] == read.sha:
            return lambda: self._touch(loc, pr.size, pr.mtime_ns)
        return read

    def _complete(self, step: _Step, future: Future | None) -> FileResult:
        """The result of a step: its deferred write, or the file analysed (by ``future`` if any) and stored."""
        if not isinstance(step, FileRead):
            return step()
        found = analysis(step, future, self.cfg)
        if isinstance(found, Reason):
            return self._quarantine(step.loc, step.size, step.mtime_ns, found, step.sha)
        return self._store_file(step.loc, step.fmt, found, step.size, step.mtime_ns, step.sha)

    def _touch(self, loc: Located, size: int | None, mtime_ns: int | None) -> FileResult:
        corpus_store.touch_file(self.store, loc.key, size, mtime_ns)  # touched, not changed
        return FileResult(loc.key, loc.origin, "unchanged")

    def _store_file(
        self, loc: Located, fmt: str, items: list[Analysed], size: int | None, mtime_ns: int | None, sha: str
    ) -> FileResult:
        result = FileResult(loc.key, loc.origin, "ingested")
        undo = _Undo()
        try:
            with self.store.tx():
                retired = self._retire(loc.key, undo)
                # One query for what the store knows of every hash in the file, instead of
                # two per document; kept up to date below as this file's rows go in.
                known = self._known([a.item.hash for a in items if isinstance(a.item, Prepared)])
                for analysed in items:
                    p = analysed.item
                    sig, target = None, None  # a signature is kept for an active document only
                    if isinstance(p, Rejected):
                        kind, content, digest = "raw", p.raw, content_hash(p.raw)
                        split, status, reason = split_of(digest, self.cfg.heldout_fraction), "dropped", p.reason
                    else:
                        kind, content, digest = p.kind, p.content, p.hash
                        seen = known.get(p.hash)
                        split = seen.split if seen is not None else split_of(p.split_key, self.cfg.heldout_fraction)
                        if p.drop is not None:
                            status, reason = "dropped", p.drop
                        else:
                            if seen is not None and seen.active is not None:
                                reason, target = self._exact_reason(*seen.active), seen.active[0]
                            else:
                                reason, target, _ = self._near_duplicate(p.dedup_text, analysed.minhash)
                            status = "active" if reason is None else "duplicate"
                            if reason is None:
                                sig = analysed.minhash
                    doc_id = corpus_store.insert_document(
                        self.store,
                        loc.key,
                        p.locator,
                        loc.origin,
                        kind,
                        fmt,
                        digest,
                        content,
                        split,
                        status,
                        None if reason is None else str(reason),
                        minhash=None if sig is None else to_bytes(sig),
                        dup_of=target,
                    )
                    if sig is not None:
                        self._index_add(doc_id, sig, undo)
                    if isinstance(p, Prepared):
                        _note(known, p.hash, split, status, (doc_id, loc.key, p.locator))
                    if reason is None:
                        result.accepted += 1
                    else:
                        result.dropped[reason.code] += 1
                self._revive(retired, undo)
                n_dropped = sum(result.dropped.values())
                corpus_store.upsert_file(
                    self.store, loc.key, loc.origin, size, mtime_ns, sha, "ingested", None, result.accepted, n_dropped
                )
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
            with self.store.tx():
                self._revive(self._retire(loc.key, undo), undo)
                corpus_store.upsert_file(
                    self.store, loc.key, loc.origin, size, mtime_ns, sha, "quarantined", str(reason), 0, 0
                )
                self.store.event("quarantined", f"{loc.key}: {reason}", path=loc.key, reason=str(reason))
        except BaseException:
            undo.run()
            raise
        log.warning("quarantined %s: %s", loc.key, reason)
        return FileResult(loc.key, loc.origin, "quarantined", str(reason))

    def _remove(self, key: str) -> FileResult:
        """Mark a deleted file (or every known file under a deleted directory) removed with its documents."""
        keys = corpus_store.tracked_under(self.store, key)
        origin = key.split("/", 1)[0]
        if not keys:
            return FileResult(key, origin, "ignored", "not in the corpus")
        undo = _Undo()
        try:
            with self.store.tx():
                retired: list[int] = []
                for k in keys:
                    retired += self._retire(k, undo)
                    corpus_store.mark_file_removed(self.store, k)
                    self.store.event("removed", f"{k}: deleted", path=k)
                self._revive(retired, undo)
        except BaseException:
            undo.run()
            raise
        log.info("removed %s (%d file(s))", key, len(keys))
        return FileResult(
            key, origin, "removed", "deleted" if keys == [key] else f"deleted directory ({len(keys)} files)"
        )

    # ----------------------------------------------------------------- documents

    def _retire(self, key: str, undo: _Undo) -> list[int]:
        """Mark a file's current documents removed; returns their ids."""
        ids = corpus_store.retire_documents(self.store, key)
        for doc_id in ids:
            sig = self._index.remove(doc_id)
            if sig is not None:
                undo(lambda doc_id=doc_id, sig=sig: self._index.add(doc_id, sig))
        return ids

    def _revive(self, removed: list[int], undo: _Undo) -> None:
        """Duplicates of removed documents are checked again: the text stays in the corpus once."""
        if not removed:
            return
        for row in corpus_store.duplicates_of(self.store, removed):
            text = dedup_text_of(row["kind"], row["content"])
            reason, target, sig = self._find_duplicate(row["hash"], text)
            if reason is not None:
                corpus_store.mark_duplicate(self.store, row["id"], str(reason), target)
                continue
            if text is not None and sig is None:
                sig = self._signature(text)
            corpus_store.reactivate(self.store, row["id"], None if sig is None else to_bytes(sig))
            if sig is not None:
                self._index_add(row["id"], sig, undo)

    def _find_duplicate(self, digest: str, text: str | None) -> tuple[Reason | None, int | None, RMinHash | None]:
        """(reason, duplicated doc id, signature of ``text`` if it was computed on the way) — reason None when unique.

        For one document at a time (the judge's question, revived duplicates); a file's
        documents are checked against one lookup of all their hashes in ``_store_file``.
        """
        row = corpus_store.first_active(self.store, digest)
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
        where = corpus_store.place_of(self.store, doc_id)
        return (
            Reason(
                "near_duplicate", f"~{jaccard:.2f} Jaccard with doc {doc_id} ({where['file_path']} {where['locator']})"
            ),
            doc_id,
            sig,
        )

    def _known(self, digests: list[str]) -> dict[str, _Known]:
        """For each of ``digests`` the store has a row of: the split of its first row, and its first active row.

        A text seen before keeps its split, even if heldout_fraction has changed since.
        """
        known: dict[str, _Known] = {}
        for digest, doc_id, file_path, locator, split, status in corpus_store.known_hashes(self.store, digests):
            _note(known, digest, split, status, (doc_id, file_path, locator))
        return known

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
        for row in corpus_store.active_signatures(self.store):
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
            texts = {
                r["id"]: dedup_text_of(r["kind"], r["content"]) or "" for r in corpus_store.contents(self.store, ids)
            }
            sigs = minhashes(
                [texts[i] for i in ids], num_perm=self.cfg.minhash_perm, shingle_words=self.cfg.shingle_words
            )
            for doc_id, sig in zip(ids, sigs, strict=True):
                fresh.append((to_bytes(sig), doc_id))
                self._index.add(doc_id, sig)
        if fresh:
            corpus_store.set_signatures(self.store, fresh)
        if not same_params:
            self.store.set_meta("corpus.minhash_params", params)
