"""The checkpoint registry: generations on disk, the ``current`` pointer, rollback, pruning.

Layout under ``<state>/models``: ``gen-NNNN/`` (model, tokenizer, selfloop_config.json, manifest.json, and the
run's metrics.jsonl, metrics.csv, train.log and logs/ when it wrote them) and
``current``, a one-line file naming the champion's folder. Guarantees: a generation folder is always whole (temp
folder, fsync, rename); the pointer moves only to a whole folder; pruning never removes the ``protected`` ones (the
champion, its predecessor, generation 0); every change is mirrored into the ``generations`` table.

Does not cover: deciding promotion (``selfloop.train.gate``) or loading into the daemon (``selfloop.model.holder``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfloop.errors import SelfloopError
from selfloop.store.runs import mark_pruned, mirror_generation

POINTER = "current"
MANIFEST = "manifest.json"
RESOLVED_CONFIG = "selfloop_config.json"
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TRAIN_LOG = "train.log"
LOGS = "logs"
_NAME = re.compile(r"^gen-(\d{4,})$")


def gen_name(n: int) -> str:
    return f"gen-{n:04d}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


class Registry:
    """Generations of one project. ``store`` (a writable Store) receives the table mirror."""

    def __init__(self, models_dir: Path, store=None):
        self.dir = Path(models_dir)
        self.store = store

    # ----------------------------------------------------------------- reading

    def path(self, n: int) -> Path:
        return self.dir / gen_name(n)

    def on_disk(self) -> list[int]:
        """Whole generations present (temp folders are not generations)."""
        if not self.dir.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.dir.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def current(self) -> int | None:
        """The champion's number, or None before generation 0 is promoted."""
        try:
            name = (self.dir / POINTER).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        m = _NAME.match(name)
        if not m or not self.path(int(m.group(1))).is_dir():
            raise SelfloopError(f"{self.dir / POINTER}: points at {name!r}, which is not a generation here")
        return int(m.group(1))

    def current_path(self) -> Path | None:
        n = self.current()
        return None if n is None else self.path(n)

    def manifest(self, n: int) -> dict[str, Any]:
        try:
            return json.loads((self.path(n) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SelfloopError(f"generation {n}: unreadable manifest ({e})") from None

    def metrics(self, n: int) -> list[dict[str, Any]]:
        """Generation ``n``'s training metrics rows (step, loss, lr, ...), in the order written; [] if it kept none."""
        try:
            lines = (self.path(n) / METRICS).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def promoted(self) -> list[int]:
        """Generations that were promoted at some point and are still on disk, oldest first."""
        return [n for n in self.on_disk() if self.manifest(n).get("status") == "promoted"]

    def predecessor(self, n: int) -> int | None:
        """The promoted generation before ``n``: the default rollback target."""
        # A generation that was rolled back away from is not a target again by default.
        earlier = [g for g in self.promoted() if g < n and not self.manifest(g).get("rolled_back_at")]
        return earlier[-1] if earlier else None

    # ----------------------------------------------------------------- writing

    def clean_temp(self) -> None:
        """Remove half-written folders left by a crash during ``add``."""
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)

    def add(
        self,
        n: int,
        model_dir: Path,
        manifest: dict[str, Any],
        resolved_config: dict[str, Any],
        extras: Sequence[Path] = (),
    ) -> Path:
        """Install ``model_dir`` (model + tokenizer) as generation ``n``, atomically, status "candidate".

        ``extras`` (files or folders: the run's metrics and logs) are copied in beside it, those that exist.
        """
        final = self.path(n)
        if final.exists():
            raise SelfloopError(f"generation {n} already exists at {final}")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{gen_name(n)}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            # Hard links are instant and safe here: checkpoint files are never modified in place.
            shutil.copytree(model_dir, tmp, copy_function=_link_or_copy)
            manifest = {
                **manifest,
                "generation": n,
                "status": "candidate",
                "created_at": manifest.get("created_at", time.time()),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            (tmp / RESOLVED_CONFIG).write_text(json.dumps(resolved_config, indent=2), encoding="utf-8")
            for extra in map(Path, extras):
                if extra.is_dir():
                    shutil.copytree(extra, tmp / extra.name)
                elif extra.is_file():
                    shutil.copy2(extra, tmp / extra.name)
            for p in tmp.iterdir():
                if p.is_file():
                    _fsync_path(p)
            _fsync_path(tmp)
            os.rename(tmp, final)
            _fsync_path(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._mirror(n, manifest)
        return final

    def update(self, n: int, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into generation ``n``'s manifest (atomic rewrite) and mirror it."""
        manifest = {**self.manifest(n), **fields}
        _write_atomic(self.path(n) / MANIFEST, json.dumps(manifest, indent=2, default=str))
        self._mirror(n, manifest)
        return manifest

    def set_current(self, n: int) -> None:
        """Point ``current`` at generation ``n`` (which must be whole on disk).

        Why a small file and not a symlink: ``os.replace`` of a file is atomic on every POSIX
        filesystem and on Windows, a reader sees either the old or the new name (never a
        dangling or half-made link), the content is validated (a stray edit cannot point
        outside the models dir), and it copies and syncs like any file (network filesystems
        and archives handle symlinks poorly).
        """
        if not (self.path(n) / MANIFEST).is_file():
            raise SelfloopError(f"generation {n} is not a whole generation in {self.dir}")
        _write_atomic(self.dir / POINTER, gen_name(n) + "\n")

    def promote(self, n: int, gate: dict[str, Any]) -> None:
        self.update(n, status="promoted", gate=gate, decided_at=time.time())
        self.set_current(n)
        if self.store is not None:
            self.store.event("promoted", f"generation {n} is the champion", generation=n, reason=gate.get("reason"))

    def reject(self, n: int, gate: dict[str, Any]) -> None:
        self.update(n, status="rejected", gate=gate, decided_at=time.time())
        if self.store is not None:
            self.store.event("rejected", f"generation {n} rejected: {gate.get('reason')}", generation=n)

    def rollback(self, to: int | None = None) -> int:
        """Make ``to`` (default: the promoted generation before the champion) current again."""
        cur = self.current()
        if to is None:
            to = self.predecessor(cur) if cur is not None else None
            if to is None:
                raise SelfloopError("no earlier promoted generation to roll back to")
        if to not in self.on_disk():
            raise SelfloopError(f"generation {to} is not on disk (pruned or never written); see `selfloop models`")
        if self.manifest(to).get("status") != "promoted":
            raise SelfloopError(
                f"generation {to} was never promoted (status {self.manifest(to).get('status')}); refusing to serve it"
            )
        self.set_current(to)
        if cur is not None and to < cur:  # going back abandons cur; jumping forward abandons nothing
            self.update(cur, rolled_back_at=time.time())
        if self.manifest(to).get("rolled_back_at"):
            self.update(to, rolled_back_at=None)
        if self.store is not None:
            self.store.event("rollback", f"rolled back from generation {cur} to {to}", frm=cur, to=to)
        return to

    def protected(self) -> set[int]:
        """Never pruned: generation 0, the champion, its predecessor and its parent.

        The predecessor is the rollback target; generation 0 is the base of
        ``init_from = "base"`` and the origin of the tokenizer.
        """
        keep = {0}
        cur = self.current()
        if cur is not None:
            keep.add(cur)
            for other in (self.predecessor(cur), self.manifest(cur).get("parent")):
                if other is not None:
                    keep.add(other)
        return keep

    def prune(self, keep_generations: int) -> list[int]:
        """Delete all but the newest ``keep_generations`` folders, sparing the protected ones."""
        gens = self.on_disk()
        newest = set(gens[-keep_generations:])
        doomed = [n for n in gens if n not in newest and n not in self.protected()]
        for n in doomed:
            shutil.rmtree(self.path(n))
            if self.store is not None:
                mark_pruned(self.store, n)
        return doomed

    def _mirror(self, n: int, manifest: dict[str, Any]) -> None:
        if self.store is not None:
            mirror_generation(self.store, n, str(self.path(n)), manifest)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not supported
        shutil.copy2(src, dst)
