"""`selfloop run`: the long-running daemon.

The main thread owns signals, the watcher, SIGHUP config reload, the events.jsonl export, the dashboard and the
systemd notifications (READY=1 once up, WATCHDOG=1 from the main loop); an APScheduler worker runs one cycle at a
time, pulled forward by new data; training runs in a child process. SIGTERM or a first SIGINT stops at the next phase
boundary (exit 0); a second SIGINT kills the training child (exit 130). Every phase is recorded before and after it
runs, so an interrupted one resumes on the next start. Each thread opens its own store connection (SQLite connections
are not shared across threads).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from rich.console import Console
from rich.live import Live
from systemd_watchdog import WatchDog

from selfloop.config import Config, ProjectPaths, load_config
from selfloop.dashboard import render, snapshot
from selfloop.errors import ConfigError, SelfloopError
from selfloop.ingest.ingestor import Ingestor
from selfloop.ingest.watcher import CorpusWatcher
from selfloop.loop.cycle import CycleInterrupted, run_cycle
from selfloop.loop.frontier import FrontierInterrupted, run_step
from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry
from selfloop.sandbox import Sandbox
from selfloop.store import DaemonLock, Store
from selfloop.train.launch import TrainingInterrupted, kill_active_children

log = logging.getLogger("selfloop.daemon")


# --------------------------------------------------------------------------- pure policy


@dataclass
class CycleTrigger:
    """When new data should pull the next cycle forward (pure; the daemon feeds it)."""

    min_new_documents: int
    min_gap_s: float
    new_documents: int = 0
    last_cycle_end: float | None = None

    def add(self, n: int) -> None:
        self.new_documents += max(0, n)

    def due(self, now: float, running: bool) -> bool:
        if running or self.new_documents < self.min_new_documents:
            return False
        return self.last_cycle_end is None or now - self.last_cycle_end >= self.min_gap_s

    def cycle_started(self) -> None:
        # Documents that arrived before the cycle's own ingest phase are part of it.
        self.new_documents = 0

    def cycle_finished(self, now: float) -> None:
        self.last_cycle_end = now


# --------------------------------------------------------------------------- logging


class JsonLineFormatter(logging.Formatter):
    """One JSON object per log record, for the log file in the state dir."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(paths: ProjectPaths, *, terminal: bool, debug: bool = False) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Watched: a file moved away by logrotate is reopened at the next record, so no line goes to the old one.
    file_handler = logging.handlers.WatchedFileHandler(paths.logs / "selfloop.jsonl", encoding="utf-8")
    file_handler.setFormatter(JsonLineFormatter())
    root.addHandler(file_handler)
    if terminal:
        term = logging.StreamHandler(sys.stderr)
        term.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"))
        root.addHandler(term)
    # APScheduler is chatty at INFO about every job run; its warnings still show, except the
    # expected one when an interval fires while a long cycle still runs (max_instances=1).
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(
        lambda record: "maximum number of running instances" not in record.getMessage()
    )


class EventExporter:
    """Appends new rows of the ``events`` table to ``events.jsonl`` (resumes after restarts and rotations).

    The store is the single source of events (the daemon, the cycle and the
    training child all write there); the file is an append-only export for tools
    that tail logs. The file is opened per export, so one that logrotate moved away is
    recreated; the last exported id is kept in the store (``meta``), so a rotated-away
    file does not make a restart export everything again.
    """

    META_KEY = "events.exported_id"

    def __init__(self, store: Store, path: Path):
        self.store = store
        self.path = path
        # The file's tail wins only when a crash came between writing lines and recording them.
        self.last_id = max(int(store.get_meta(self.META_KEY, "0") or 0), self._file_tail_id())

    def _file_tail_id(self) -> int:
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 65536))
                lines = f.read().splitlines()
            for line in reversed(lines):
                try:
                    return int(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError):
                    continue
        except OSError:
            pass
        return 0

    def export(self) -> int:
        rows = self.store.events_after(self.last_id)
        if not rows:
            return 0
        with self.path.open("a", encoding="utf-8") as f:
            for r in rows:
                f.write(
                    json.dumps(
                        {
                            "id": r["id"],
                            "ts": r["ts"],
                            "kind": r["kind"],
                            "message": r["message"],
                            "data": json.loads(r["data"] or "{}"),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        self.last_id = rows[-1]["id"]
        self.store.set_meta(self.META_KEY, str(self.last_id))
        return len(rows)


# --------------------------------------------------------------------------- the daemon


@dataclass
class Daemon:
    """One process, three kinds of work:

    * the **main thread** owns signals, the watcher (settled files are ingested as
      they arrive), the config reload on SIGHUP, the events.jsonl export and the
      dashboard;
    * an **APScheduler** ``BackgroundScheduler`` with a single worker runs the cycle
      job (interval or cron from ``[schedule]``, ``max_instances=1``, coalesced,
      with a misfire grace). New settled data pulls the next run forward, subject to
      ``min_new_documents`` and ``min_gap_s``;
    * the **training child** (started by the cycle) is a separate process.

    Stopping: SIGTERM or the first SIGINT asks the cycle to stop at its next phase
    boundary (the training child is told to save a checkpoint and exit); the daemon
    exits 0 once that is done or after ``schedule.stop_timeout_s``. A second SIGINT
    forces: the training child is killed and the daemon exits 130.
    """

    config_path: Path
    headless: bool = True
    debug: bool = False
    cfg: Config = field(init=False)
    paths: ProjectPaths = field(init=False)

    def __post_init__(self) -> None:
        self.cfg, self.paths = load_config(self.config_path)
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.interrupts = 0
        self.cycle_running = threading.Event()
        self.trigger = CycleTrigger(self.cfg.schedule.min_new_documents, self.cfg.schedule.min_gap_s)
        self.pending_cfg: Config | None = None
        self.scheduler: Any = None
        self.holder: Any = None  # the champion, hot-reloaded after each promotion
        self.sandbox: Any = None  # one warm sandbox for every cycle's judges
        self.frontier_failures = 0
        self.frontier_retry_at = 0.0
        # sd_notify over NOTIFY_SOCKET (a no-op outside a Type=notify unit). Non-blocking: a service manager
        # that reads nothing must not stall the main loop. The children (training, sandboxes) must not speak
        # for the daemon, so they do not inherit the socket.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.setblocking(False)
        self.systemd = WatchDog(sock=notify)
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(key, None)

    # ----------------------------------------------------------- signals and notifications

    @staticmethod
    def _notify(send: Any, *args: Any) -> None:
        """sd_notify is advisory: a service manager that cannot be reached never stops the daemon."""
        try:
            send(*args)
        except OSError as e:
            log.debug("sd_notify not delivered: %s", e)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.interrupts += 1
        if self.interrupts > 1 and signum == signal.SIGINT:
            # Second Ctrl-C: no more waiting for a clean phase boundary.

            log.warning("second interrupt: forcing exit (the interrupted phase resumes on restart)")
            kill_active_children()
            os._exit(130)
        log.info("stopping (%s): finishing at the next phase boundary", signal.Signals(signum).name)
        self.stop_event.set()

    # ----------------------------------------------------------- config reload

    def _reload_config(self, store: Store) -> None:
        self.reload_requested.clear()
        try:
            new_cfg, new_paths = load_config(self.config_path)
        except ConfigError as e:
            log.error("config reload rejected; keeping the running config:\n  %s", "\n  ".join(e.lines))
            store.event("config_rejected", "SIGHUP: invalid config kept out", errors=e.lines)
            return
        if new_paths != self.paths:
            log.error("config reload rejected: [paths] cannot change while running")
            store.event("config_rejected", "SIGHUP: [paths] cannot change while running")
            return
        self.pending_cfg = new_cfg
        log.info("config reloaded; it takes effect at the next cycle")
        store.event("config_reloaded", "SIGHUP: new config takes effect at the next cycle")
        if not self.cycle_running.is_set():
            self._apply_pending_config()

    def _apply_pending_config(self) -> None:
        if self.pending_cfg is None:
            return
        old_schedule = self.cfg.schedule
        self.cfg, self.pending_cfg = self.pending_cfg, None
        self.trigger.min_new_documents = self.cfg.schedule.min_new_documents
        self.trigger.min_gap_s = self.cfg.schedule.min_gap_s
        if self.scheduler is not None and (old_schedule.interval_minutes, old_schedule.cron) != (
            self.cfg.schedule.interval_minutes,
            self.cfg.schedule.cron,
        ):
            self.scheduler.reschedule_job("cycle", trigger=self._cycle_trigger())

    # ----------------------------------------------------------- scheduling

    def _cycle_trigger(self) -> Any:

        if self.cfg.schedule.cron:
            return CronTrigger.from_crontab(self.cfg.schedule.cron)
        return IntervalTrigger(minutes=self.cfg.schedule.interval_minutes)

    def _start_scheduler(self) -> None:

        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(self.cfg.schedule.misfire_grace_s) or None,
            },
        )
        # The first cycle runs at once: it trains generation 0 or resumes an interrupted cycle.
        now = datetime.now().astimezone()
        self.scheduler.add_job(self._cycle_job, self._cycle_trigger(), id="cycle", next_run_time=now)
        if self.cfg.frontier.enabled:
            # The one worker thread alternates frontier steps with cycles: they never compete for the cores.
            self.scheduler.add_job(
                self._frontier_job,
                IntervalTrigger(seconds=max(1.0, self.cfg.frontier.pause_s)),
                id="frontier",
                next_run_time=now + timedelta(seconds=1),
            )
        self.scheduler.start()

    def _pull_cycle_forward(self) -> None:
        log.info("%d new document(s) settled: next cycle now", self.trigger.new_documents)
        self.scheduler.modify_job("cycle", next_run_time=datetime.now().astimezone() + timedelta(milliseconds=50))

    def _cycle_job(self) -> None:

        if self.stop_event.is_set():
            return
        self._apply_pending_config()
        self.cycle_running.set()
        self.trigger.cycle_started()
        store = Store.open(self.paths.db)
        try:
            store.set_meta("daemon.state", "cycle")
            self._publish_plan(store)
            run_cycle(
                self.cfg,
                self.paths,
                store,
                config_path=self.config_path,
                should_stop=self.stop_event.is_set,
                log=log.info,
                holder=self._holder(),
                sandbox=self._sandbox(),
            )
            self._publish_model(store)
        except (CycleInterrupted, TrainingInterrupted) as e:
            log.info("cycle paused: %s", e)  # a requested stop: it resumes at this point on the next start
        except SelfloopError as e:
            log.error("cycle failed: %s", e)
            store.event("cycle_failed", str(e))
        except Exception:
            # A bug in one cycle must not take the daemon down; it is logged with its traceback
            # and the cycle resumes from its last phase boundary next time.
            log.exception("cycle crashed; it resumes at its last phase boundary on the next run")
            store.event("cycle_failed", "unexpected error (see the log)")
        finally:
            self.trigger.cycle_finished(time.time())
            self.cycle_running.clear()
            store.set_meta("daemon.state", "stopping" if self.stop_event.is_set() else "idle")
            store.close()

    def _frontier_job(self) -> None:
        """One step (generation 0 or a round) for each frontier family; failures back off, never stop the daemon."""
        if self.stop_event.is_set() or time.time() < self.frontier_retry_at:
            return
        self._apply_pending_config()
        store = Store.open(self.paths.db)
        try:
            store.set_meta("daemon.state", "frontier")
            done = 0
            for spec in self.cfg.frontier.families:
                if self.stop_event.is_set() or not self.cfg.frontier.enabled:
                    break
                result = run_step(
                    self.cfg.frontier,
                    spec,
                    self.paths,
                    store,
                    should_stop=self.stop_event.is_set,
                    sandbox=self.cfg.sandbox,
                )
                done += result["kind"] == "done"
                log.info("frontier %s: %s", result["family"], result["reason"])
            self.frontier_failures = 0
            if done == len(self.cfg.frontier.families):
                self.frontier_retry_at = time.time() + 600.0  # every family is at max_level: look again later
        except FrontierInterrupted as e:
            log.info("%s", e)
        except Exception as e:
            # A broken family or a crashed step must not end the daemon; retries back off up to ten minutes.
            self.frontier_failures += 1
            delay = min(600.0, 30.0 * 2 ** (self.frontier_failures - 1))
            self.frontier_retry_at = time.time() + delay
            if isinstance(e, SelfloopError):
                log.error("frontier step failed (retry in %.0f s): %s", delay, e)
            else:
                log.exception("frontier step crashed (retry in %.0f s)", delay)
            store.event("frontier_failed", f"{e} (retry in {delay:.0f} s)")
        finally:
            store.set_meta("daemon.state", "stopping" if self.stop_event.is_set() else "idle")
            store.close()

    def _holder(self) -> Any:
        if self.holder is None:
            device = resolve_device(self.cfg.model)
            dtype = resolve_dtype(self.cfg.model, device)
            self.holder = ModelHolder(
                Registry(self.paths.models), lambda path: load_pretrained(path, device=device, dtype=dtype)
            )
        return self.holder

    def _sandbox(self) -> Any:
        """The warm sandbox, or None when no judge pipeline runs code (it is then never started)."""
        judges = self.cfg.judge
        if self.sandbox is None and any(
            j in ("python", "task") for j in judges.text + judges.chat + judges.python + judges.task
        ):
            self.sandbox = Sandbox(self.cfg.sandbox)
        return self.sandbox

    def _publish_plan(self, store: Store) -> None:
        """What the dashboard needs to draw this cycle's progress bars."""
        first = Registry(self.paths.models).current() is None
        store.set_meta("train.total_steps", str(self.cfg.train.gen0_steps if first else self.cfg.train.max_steps))
        if self.sandbox is not None:
            store.set_meta("sandbox.backend", self.sandbox.backend_name)

    def _publish_model(self, store: Store) -> None:
        holder = self.holder
        if holder is None:
            return
        holder.reload_if_changed()  # after generation 0 the holder has never loaded anything
        with holder.acquire() as loaded:
            params = sum(p.numel() for p in loaded.model.parameters())
            store.set_meta("model.summary", f"gen {loaded.generation}, {params / 1e6:.2f}M params")

    # ----------------------------------------------------------- main

    def run(self) -> int:
        lock = DaemonLock(self.paths.state)
        lock.acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> int:

        dashboard = not self.headless
        if dashboard:
            # Library warnings printed to the terminal would tear the live view; they still reach the log file.
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self._install_signals()  # first: a stop during start-up is graceful too
        setup_logging(self.paths, terminal=not dashboard, debug=self.debug)
        store = Store.open(self.paths.db)
        store.set_meta("daemon.state", "starting")
        store.set_meta("daemon.started", str(time.time()))
        store.event("daemon_started", f"daemon started (pid {os.getpid()})", pid=os.getpid())
        exporter = EventExporter(store, self.paths.state / "events.jsonl")
        log.info("selfloop daemon pid %d on %s", os.getpid(), self.paths.root)

        ingestor = Ingestor(self.cfg.ingest, self.cfg.watch, self.paths, store)
        watcher = None
        if self.cfg.watch.enabled:
            # Watch before the start-up scan, so a file dropped during the scan is not missed
            # (one seen by both is simply found unchanged the second time).
            watcher = CorpusWatcher(self.paths, self.cfg.watch)
            watcher.start()
        self._notify(self.systemd.status, "startup scan of the corpus")
        report = ingestor.scan()
        log.info("startup scan: %s", report.summary())
        self._start_scheduler()
        store.set_meta("daemon.state", "idle" if not self.cycle_running.is_set() else "cycle")
        self._notify(self.systemd.ready)
        self._notify(self.systemd.status, f"running; startup scan: {report.summary()}")

        view = None
        if dashboard:
            view = _LiveView(self.paths, self.cfg)
            view.start()
        try:
            while not self.stop_event.is_set():
                try:
                    self._tick(store, ingestor, watcher, exporter, view)
                except Exception:
                    # One bad file, a full disk or a bug in a handler must not end the daemon:
                    # log it with its traceback and carry on (the next tick retries).
                    log.exception("main loop error (the daemon keeps running)")
                    self.stop_event.wait(1.0)
        finally:
            store.set_meta("daemon.state", "stopping")
            self._notify(self.systemd.status, "stopping at the next phase boundary")
            self._shutdown(watcher)
            exporter.export()
            store.event("daemon_stopped", "daemon stopped")
            exporter.export()
            store.set_meta("daemon.state", "stopped")
            store.close()
            if view is not None:
                view.stop()
            log.info("daemon stopped")
        return 0

    def _tick(self, store: Store, ingestor: Any, watcher: Any, exporter: EventExporter, view: Any) -> None:
        self._notify(self.systemd.ping)  # at most every half WatchdogSec: the main loop is alive
        if self.reload_requested.is_set():
            self._reload_config(store)
        if watcher is not None:
            for path in watcher.drain(timeout=0.5):
                self.trigger.add(ingestor.ingest_path(path).accepted)  # the ingestor logs each file
                self._notify(self.systemd.ping)
        else:
            self.stop_event.wait(0.5)
        if self.trigger.due(time.time(), self.cycle_running.is_set()):
            self._pull_cycle_forward()
            self.trigger.new_documents = 0
        exporter.export()
        if view is not None:
            view.refresh()

    def _shutdown(self, watcher: Any) -> None:
        if watcher is not None:
            watcher.stop()
        if self.scheduler is None:
            return
        self.scheduler.pause()
        done = threading.Event()
        threading.Thread(target=lambda: (self.scheduler.shutdown(wait=True), done.set()), daemon=True).start()
        if not done.wait(self.cfg.schedule.stop_timeout_s):
            log.warning("cycle did not stop within %.0fs; killing the training child", self.cfg.schedule.stop_timeout_s)
            kill_active_children()
            done.wait(10)
        if self.sandbox is not None:
            self.sandbox.close()


class _LiveView:
    """The dashboard inside `selfloop run` (same renderer as `selfloop dashboard`)."""

    def __init__(self, paths: ProjectPaths, cfg: Config):

        self.paths = paths
        self.cfg = cfg
        self.console = Console()
        self.live = Live(console=self.console, refresh_per_second=cfg.dashboard.refresh_per_second, screen=False)
        self.reader: Store | None = None
        self.last = 0.0

    def start(self) -> None:
        self.live.start()

    def refresh(self) -> None:

        now = time.time()
        if now - self.last < 1.0 / self.cfg.dashboard.refresh_per_second:
            return
        self.last = now
        if self.reader is None:
            self.reader = Store.open(self.paths.db, readonly=True)
        self.live.update(render(snapshot(self.reader, self.paths, self.cfg.dashboard), self.console.width))

    def stop(self) -> None:
        self.live.stop()
        if self.reader is not None:
            self.reader.close()
