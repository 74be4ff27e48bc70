"""The daemon as a real subprocess in a temp project with a tiny config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from lifecycle_helpers import chat_record, make_project, paragraph

from selfloop.errors import AlreadyRunning
from selfloop.loop.daemon import CycleTrigger, EventExporter
from selfloop.store import Store

FAST = {
    "schedule": {"interval_minutes": 60, "min_gap_s": 0, "stop_timeout_s": 30},
    "watch": {"settle_s": 0.3, "debounce_s": 0.1},
}


# --------------------------------------------------------------------------- pure parts


def test_trigger_policy():
    t = CycleTrigger(min_new_documents=2, min_gap_s=60)
    t.add(1)
    assert not t.due(now=0, running=False)
    t.add(1)
    assert t.due(now=0, running=False)
    assert not t.due(now=0, running=True)  # never while a cycle runs
    t.cycle_started()
    t.cycle_finished(now=100)
    t.add(5)
    assert not t.due(now=130, running=False)  # minimum gap between cycles
    assert t.due(now=161, running=False)


def test_event_exporter_appends_and_resumes(tmp_path):
    store = Store.open(tmp_path / "state.db")
    out = tmp_path / "events.jsonl"
    store.event("a", "first")
    assert EventExporter(store, out).export() == 1
    store.event("b", "second", n=2)
    exporter = EventExporter(store, out)  # a restart: picks up after the last exported id
    assert exporter.export() == 1 and exporter.export() == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["a", "b"] and rows[1]["data"] == {"n": 2}


def test_event_exporter_after_a_rotation_exports_nothing_twice(tmp_path):
    store = Store.open(tmp_path / "state.db")
    out = tmp_path / "events.jsonl"
    for i in range(3):
        store.event("old", f"event {i}")
    exporter = EventExporter(store, out)
    assert exporter.export() == 3
    out.rename(tmp_path / "events.jsonl.1")  # logrotate moves the file away while the daemon runs
    store.event("during", "after the rotation")
    assert exporter.export() == 1  # reopened: the line lands in a new file, not the moved one
    (tmp_path / "events.jsonl.1").rename(tmp_path / "events.jsonl.2")
    out.rename(tmp_path / "events.jsonl.1")
    store.event("after", "after the restart")
    assert EventExporter(store, out).export() == 1  # a restart resumes from the store, not from the (new, empty) file
    kinds = [
        json.loads(line)["kind"]
        for name in ("events.jsonl.2", "events.jsonl.1", "events.jsonl")
        for line in (tmp_path / name).read_text().splitlines()
    ]
    assert kinds == ["old", "old", "old", "during", "after"]


# --------------------------------------------------------------------------- the real daemon


class Daemon:
    def __init__(self, config_path: Path, env: dict[str, str] | None = None):
        self.config_path = config_path
        self.root = config_path.parent
        self.log = open(self.root / "daemon.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")} | (env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfloop", "run", "--headless", "-c", str(config_path)],
            cwd=self.root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def store(self) -> Store:
        return Store.open(self.root / ".selfloop" / "state.db", readonly=True)

    def wait_for(self, sql: str, params=(), timeout: float = 180, what: str = "") -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}: {self.output()[-3000:]}"
            try:
                with self.store() as s:
                    if s.scalar(sql, params):
                        return
            except Exception:
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what or sql}\n{self.output()[-3000:]}")

    def output(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def write_corpus(orig: Path) -> None:
    (orig / "prose.txt").write_text("\n\n".join(paragraph(i, 8) for i in range(40)) + "\n")
    (orig / "chat.jsonl").write_text("".join(json.dumps(chat_record(i)) + "\n" for i in range(30)))


@pytest.mark.slow
def test_daemon_ingests_dropped_file_reloads_config_refuses_twin_and_stops_cleanly(tmp_path, cli):
    config_path, _, paths = make_project(tmp_path / "proj", FAST)
    write_corpus(paths.orig)
    d = Daemon(config_path)
    try:
        d.wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'done'", what="generation 0")
        # A second daemon on the same state dir is refused with the running pid.
        twin = cli("run", "--headless", "-c", str(config_path), timeout=60)
        assert twin.returncode == AlreadyRunning.exit_code and f"pid {d.proc.pid}" in twin.stderr
        status = json.loads(cli("status", "--json", "-c", str(config_path)).stdout)
        assert (
            status["daemon"]["running"] and status["daemon"]["pid"] == d.proc.pid and status["current_generation"] == 0
        )

        # An invalid config on SIGHUP is reported and the old one stays.
        good = config_path.read_text()
        config_path.write_text(good + "\n[train]\nmax_steps = -1\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for("SELECT COUNT(*) FROM events WHERE kind = 'config_rejected'", what="config_rejected", timeout=30)
        assert d.proc.poll() is None
        config_path.write_text(good.replace("max_steps = 8", "max_steps = 6"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for("SELECT COUNT(*) FROM events WHERE kind = 'config_reloaded'", what="config_reloaded", timeout=30)

        # A dropped file is ingested once settled and pulls the next cycle forward.
        (paths.orig / "dropped.txt").write_text("\n\n".join(paragraph(700 + i, 8) for i in range(6)))
        d.wait_for(
            "SELECT COUNT(*) FROM documents WHERE file_path = 'orig/dropped.txt' AND status = 'active'",
            what="ingest",
            timeout=60,
        )
        d.wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'done' AND generation = 1", what="cycle 2", timeout=240)
        with d.store() as s:
            manifest = json.loads((paths.models / "gen-0001" / "manifest.json").read_text())
            assert manifest["train"]["global_step"] == 6  # the reloaded config took effect at the next cycle
            assert s.scalar("SELECT COUNT(*) FROM events WHERE kind = 'daemon_started'") == 1
    finally:
        if d.proc.poll() is None:
            started = time.time()
            assert d.stop() == 0
            assert time.time() - started < 40
        else:
            d.kill()
    with Store.open(paths.db) as s:
        assert s.integrity_ok()
        assert s.get_meta("daemon.state") == "stopped"
        assert s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'running'") == 0
    events = [json.loads(line)["kind"] for line in (paths.state / "events.jsonl").read_text().splitlines()]
    assert events[0] == "daemon_started" and events[-1] == "daemon_stopped" and "promoted" in events
    assert not (paths.state / "daemon.pid").exists()
    assert [json.loads(line) for line in (paths.logs / "selfloop.jsonl").read_text().splitlines()]  # JSON log lines


def notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """The sd_notify lines received on ``sock`` up to and including the first that equals ``until``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while until not in got:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got += sock.recv(4096).decode().splitlines()
        except TimeoutError:
            raise AssertionError(f"no {until} within {timeout:.0f}s; got {got}") from None
    return got


@pytest.mark.slow
def test_daemon_notifies_systemd_rotates_its_logs_and_refuses_a_twin_with_its_own_exit_code(tmp_path, cli):
    config_path, _, paths = make_project(tmp_path / "proj", FAST)
    write_corpus(paths.orig)
    short = Path(tempfile.mkdtemp(prefix="sl-notify-", dir="/tmp"))  # a socket path has ~100 bytes
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(short / "notify"))
    d = Daemon(config_path, env={"NOTIFY_SOCKET": str(short / "notify"), "WATCHDOG_USEC": "400000"})
    try:
        assert "READY=1" in notifications(notify, "READY=1", timeout=180)
        with d.store() as s:  # ready means up: the lock is held and the start-up scan is done
            assert s.scalar("SELECT COUNT(*) FROM documents") > 0
        assert "WATCHDOG=1" in notifications(notify, "WATCHDOG=1", timeout=10)
        assert "WATCHDOG=1" in notifications(notify, "WATCHDOG=1", timeout=10)  # and again: pings, not a one-off

        # A twin exits with the code the unit's RestartPreventExitStatus names.
        twin = cli("run", "--headless", "-c", str(config_path), timeout=60)
        assert twin.returncode == AlreadyRunning.exit_code == 3 and f"pid {d.proc.pid}" in twin.stderr

        # logrotate moves both files away; the next lines land in new files.
        (paths.logs / "selfloop.jsonl").rename(paths.logs / "selfloop.jsonl.1")
        (paths.state / "events.jsonl").rename(paths.state / "events.jsonl.1")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for("SELECT COUNT(*) FROM events WHERE kind = 'config_reloaded'", what="config_reloaded", timeout=30)
        new_events = paths.state / "events.jsonl"
        deadline = time.time() + 30
        while not (new_events.exists() and "config_reloaded" in new_events.read_text()):
            assert time.time() < deadline, "config_reloaded never reached the new events.jsonl"
            time.sleep(0.2)
        assert "config reloaded" in (paths.logs / "selfloop.jsonl").read_text()
    finally:
        if d.proc.poll() is None:
            assert d.stop() == 0
        else:
            d.kill()
        notify.close()
    d = Daemon(config_path)  # a restart after the rotation
    try:
        d.wait_for("SELECT COUNT(*) FROM events WHERE kind = 'daemon_started' HAVING COUNT(*) = 2", what="restart")
    finally:
        assert d.stop() == 0
    exported = [
        json.loads(line)["id"]
        for name in ("events.jsonl.1", "events.jsonl")
        for line in (paths.state / name).read_text().splitlines()
    ]
    with Store.open(paths.db, readonly=True) as s:
        assert exported == [r["id"] for r in s.query("SELECT id FROM events ORDER BY id")]  # each once, in order
    assert "daemon stopped" in (paths.logs / "selfloop.jsonl").read_text()


@pytest.mark.slow
def test_kill_9_during_training_then_restart_resumes_from_the_checkpoint(tmp_path):
    config_path, _, paths = make_project(
        tmp_path / "proj", {**FAST, "train": {"gen0_steps": 120, "save_steps": 10, "log_steps": 5}}
    )
    write_corpus(paths.orig)
    d = Daemon(config_path)
    try:
        d.wait_for(
            "SELECT COUNT(*) FROM train_metrics WHERE generation = 0 AND step >= 30", what="training past a checkpoint"
        )
    finally:
        d.kill()  # the daemon and its training child die at once, like a power cut
    with Store.open(paths.db, readonly=True) as s:
        assert s.scalar("SELECT status FROM cycles") == "running" and s.scalar("SELECT phase FROM cycles") == "train"
        killed_at = s.scalar("SELECT MAX(step) FROM train_metrics")
        first_id = s.scalar("SELECT MAX(id) FROM train_metrics")
    assert list((paths.runs / "gen-0000").rglob("checkpoint-*"))

    d = Daemon(config_path)
    try:
        d.wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'done'", what="the resumed cycle", timeout=300)
    finally:
        assert d.stop() == 0
    with Store.open(paths.db, readonly=True) as s:
        assert s.scalar("SELECT COUNT(*) FROM cycles") == 1  # the same cycle, resumed
        resumed_from = s.scalar("SELECT MIN(step) FROM train_metrics WHERE id > ?", (first_id,))
        assert resumed_from > 10 and resumed_from <= killed_at + 10  # from the last checkpoint, not from zero
        assert s.integrity_ok()
    assert json.loads((paths.models / "gen-0000" / "manifest.json").read_text())["train"]["global_step"] == 120


@pytest.mark.slow
def test_daemon_grows_the_frontier_between_cycles_and_stops_a_step_cleanly(tmp_path):
    from selfloop.testing import TINY_FRONTIER

    frontier = {**TINY_FRONTIER, "enabled": True, "pause_s": 1.0}
    config_path, _, paths = make_project(tmp_path / "proj", {**FAST, "frontier": frontier})
    write_corpus(paths.orig)
    d = Daemon(config_path)
    try:
        d.wait_for("SELECT COUNT(*) FROM frontier_steps WHERE kind = 'gen0'", what="frontier generation 0")
        d.wait_for("SELECT COUNT(*) FROM frontier_steps WHERE kind = 'round'", what="a frontier round")
        with d.store() as s:
            assert s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'done'") >= 1  # cycles ran as well
            assert s.scalar("SELECT COUNT(*) FROM events WHERE kind = 'frontier'") >= 2
        assert (paths.frontier_rework / "addition" / "round-0001.jsonl").is_file()
        assert d.stop() == 0
    finally:
        d.kill()
    # The frontier labels are the frontier model's: the text model's ingest never saw them.
    with Store.open(paths.db, readonly=True) as s:
        assert not s.scalar("SELECT COUNT(*) FROM files WHERE path LIKE 'rework/frontier/%'")
