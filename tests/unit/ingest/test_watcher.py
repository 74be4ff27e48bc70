"""The watcher: settle logic with a controlled clock, and a real watchdog Observer on tmp dirs."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

from selfloop.config import IngestConfig, WatchConfig
from selfloop.ingest.ingestor import Ingestor
from selfloop.ingest.watcher import CorpusWatcher, SettledQueue, stat_signature
from selfloop.store import Store

TEXT = (
    "Rivers carry water from the mountains to the sea, shaping valleys and plains along the way. "
    "Over thousands of years they move sand and stone, build deltas and feed the fields of farmers."
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------- SettledQueue (real files, controlled clock)


def test_close_event_releases_after_debounce(tmp_path):
    clock = Clock()
    q = SettledQueue(settle_s=5, debounce_s=1, clock=clock)
    f = tmp_path / "a.txt"
    f.write_text("x")
    q.push(f)
    q.push(f, complete=True)
    assert q.pop_ready() == []  # still inside the debounce window
    clock.now += 1.0
    assert q.pop_ready() == [f] and len(q) == 0


def test_without_close_the_file_must_stay_unchanged_for_settle_s(tmp_path):
    clock = Clock()
    q = SettledQueue(settle_s=3, debounce_s=0.5, clock=clock)
    f = tmp_path / "slow.txt"
    f.write_text("part one")
    q.push(f)
    clock.now += 2
    assert q.pop_ready() == []
    f.write_text("part one, part two")  # grew without an event reaching the queue
    clock.now += 2
    assert q.pop_ready() == []  # the change restarted the settle timer
    clock.now += 3
    assert q.pop_ready() == [f]


def test_new_events_restart_the_debounce_and_clear_completion(tmp_path):
    clock = Clock()
    q = SettledQueue(settle_s=10, debounce_s=1, clock=clock)
    f = tmp_path / "a.txt"
    f.write_text("x")
    q.push(f, complete=True)
    clock.now += 0.5
    q.push(f)  # written again after the close: not complete any more
    clock.now += 1.5
    assert q.pop_ready() == []
    clock.now += 10
    assert q.pop_ready() == [f]


def test_deleted_path_is_released(tmp_path):
    clock = Clock()
    q = SettledQueue(settle_s=5, debounce_s=1, clock=clock)
    gone = tmp_path / "gone.txt"
    q.push(gone, complete=True)
    assert stat_signature(gone) is None
    clock.now += 1
    assert q.pop_ready() == [gone]


# ----------------------------------------------------------------- CorpusWatcher with a real Observer


def drain_until(watcher: CorpusWatcher, want: Path, timeout: float = 15.0) -> list[Path]:
    seen: list[Path] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and want not in seen:
        seen += watcher.drain(0.5)
    return seen


@pytest.mark.parametrize("polling", [False, True])
def test_watcher_picks_up_a_dropped_file_and_ingests_it(project, polling):
    cfg = WatchConfig(settle_s=0.3, debounce_s=0.1, polling=polling, poll_interval_s=0.2)
    with Store.open(project.db) as store, CorpusWatcher(project, cfg) as watcher:
        assert watcher.backend == ("polling" if polling else "inotify")
        ing = Ingestor(IngestConfig(), cfg, project, store)
        (project.orig / ".hidden.txt").write_text(TEXT)
        target = project.orig / "dropped.txt"
        tmp = project.orig / "dropped.txt.part"
        tmp.write_text(TEXT)
        tmp.rename(target)
        paths = drain_until(watcher, target)
        assert target in paths
        assert not any(p.name.startswith(".") or p.suffix == ".part" for p in paths)
        assert ing.ingest_path(target).status == "ingested"
        assert store.scalar("SELECT count(*) FROM documents WHERE status = 'active'") == 1


def test_a_file_being_written_slowly_is_never_handed_over_half(project):
    cfg = WatchConfig(settle_s=0.6, debounce_s=0.2)
    chunks = [f"Line {i}: " + TEXT + "\n" for i in range(8)]
    with CorpusWatcher(project, cfg) as watcher:
        target = project.orig / "slow.txt"
        done = threading.Event()

        def write_slowly() -> None:
            with open(target, "w") as f:  # kept open: no close event until the end
                for chunk in chunks:
                    f.write(chunk)
                    f.flush()
                    time.sleep(0.15)
            done.set()

        writer = threading.Thread(target=write_slowly)
        writer.start()
        handed: list[tuple[Path, str]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(p == target for p, _ in handed):
            for p in watcher.drain(0.2):
                handed.append((p, p.read_text()))
        writer.join()
        assert done.is_set()
        contents = [text for p, text in handed if p == target]
        assert contents == ["".join(chunks)]


def test_deleted_file_is_handed_over_and_marked_removed(project):
    cfg = WatchConfig(settle_s=0.3, debounce_s=0.1)
    f = project.orig / "doomed.txt"
    f.write_text(TEXT)
    with Store.open(project.db) as store, CorpusWatcher(project, cfg) as watcher:
        ing = Ingestor(IngestConfig(), cfg, project, store)
        ing.scan()
        f.unlink()
        assert f in drain_until(watcher, f)
        assert ing.ingest_path(f).status == "removed"
        assert store.scalar("SELECT count(*) FROM documents WHERE status = 'active'") == 0


def test_inotify_limit_falls_back_to_polling(project, caplog):
    def exhausted():
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    cfg = WatchConfig(settle_s=0.2, debounce_s=0.1, poll_interval_s=0.2)
    with CorpusWatcher(project, cfg, observer_factory=exhausted) as watcher:
        assert watcher.backend == "polling"
        target = project.orig / "late.txt"
        target.write_text(TEXT)
        assert target in drain_until(watcher, target)
    assert "inotify limit reached" in caplog.text and "polling" in caplog.text
