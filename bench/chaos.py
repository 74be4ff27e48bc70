"""Chaos harness: kill -9 the daemon at random moments in every phase, restart it, check what must hold.

    python -m bench.chaos --trials 50            # `make chaos`: prints the figures
    python -m bench.chaos --trials 3 --quick     # the CI subset (tests/test_reliability_chaos.py)

One throwaway project (tiny model, rework and tasks on, a small mixed corpus) and
one daemon at a time, started as ``python -m selfloop run --headless``. Each trial
picks a target, round robin over the daemon's startup, every cycle phase and the
idle time between cycles; waits until the running daemon is there; lets a random
share of that target's usual length pass; and kills the daemon's whole process
tree with SIGKILL, like a power cut. The daemon is frozen (SIGSTOP) first so it
cannot start a child while the tree is collected. The tree includes the training
child, which runs in a session of its own and would otherwise outlive its parent
(RELIABILITY.md says why this stands in for a power cut).

After each kill, before the restart, these must hold (``check_invariants``):

* the orig tree is byte-identical to its snapshot from before the first start;
* every rework file parses whole, and record ids are unique across rework/;
* ``current`` (once it exists) names a generation that loads with
  ``AutoModelForCausalLM`` / ``AutoTokenizer`` and gives finite logits;
* SQLite ``PRAGMA integrity_check`` is ok;
* no process of the killed tree is alive.

Then the daemon is restarted and the cycle that was interrupted must resume (the
same ``cycles`` row) and reach ``done``, within ``--resume-timeout``.

Where each kill landed is read back from the store after the kill (nothing can
be committed after SIGKILL): the phase recorded ``running``, the boundary after
a phase, startup or idle. Short phases (gate, promote) last milliseconds, so most
kills aimed at them land on their boundaries; the figures say so.

Does not cover: graceful stops (tests/test_daemon.py), disk faults and hostile
input (tests/test_reliability_*.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from selfloop import testing
from selfloop.config import ProjectPaths
from selfloop.errors import SelfloopError
from selfloop.model.registry import Registry
from selfloop.store import Store

PHASES = ["ingest", "rework", "judge", "train", "evaluate", "gate", "promote"]
# Every cycle phase, plus the daemon's startup and the idle time between cycles.
# Training comes first (generation 0 is the first thing a fresh project does) and
# twice per round: it is the long phase, and the one with checkpoints being written.
TARGETS = ["train", "startup", "ingest", "rework", "judge", "train", "evaluate", "gate", "promote", "idle"]
QUICK_TARGETS = ["train", "judge", "evaluate"]

# A tiny project whose every cycle runs all phases in tens of seconds on 2 CPU cores.
CHAOS_CONFIG: dict[str, Any] = testing.tiny_config(
    {
        "train": {"gen0_steps": 40, "max_steps": 12, "eval_samples": 1},
        "rework": {
            "enabled": True,
            "candidates_per_cycle": 12,
            "samples_per_prompt": 2,
            "max_new_tokens": 16,
            "batch_size": 8,
            "temperature": 0.9,
        },
        "judge": {"diversity_floor": 0.05},
        "tasks": {
            "families": ["addition"],
            "max_difficulty": 2,
            "heldout_per_level": 2,
            "samples_per_task": 2,
            "max_new_tokens": 12,
        },
        "sandbox": {"pool_size": 1, "timeout_s": 5.0},
        # Cycles back to back: the interval is the only thing between two cycles.
        "schedule": {"interval_minutes": 0.02, "min_gap_s": 0, "stop_timeout_s": 60},
        "watch": {"settle_s": 0.3, "debounce_s": 0.1},
    }
)

DEFAULT_DURATION_S = {
    "startup": 6.0,
    "idle": 1.0,
    "ingest": 0.2,
    "rework": 3.0,
    "judge": 3.0,
    "train": 8.0,
    "evaluate": 3.0,
    "gate": 0.01,
    "promote": 0.1,
}

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "a sailor", "the baker"]
VERBS = ["sees", "likes", "finds", "helps", "follows", "paints", "carries", "remembers"]
OBJECTS = ["the red ball", "a green tree", "the river", "a quiet house", "the garden", "a long road", "the harbour"]


# --------------------------------------------------------------------------- the project


def write_corpus(orig: Path, seed: int = 0) -> None:
    """Prose, chats and addition tasks: every kind of document a cycle handles."""
    rng = random.Random(seed)

    def sentence() -> str:
        return f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."

    orig.mkdir(parents=True, exist_ok=True)
    (orig / "prose.txt").write_text("\n\n".join(" ".join(sentence() for _ in range(8)) for _ in range(40)) + "\n")
    (orig / "notes.md").write_text(
        "# Notes\n\n" + "\n\n".join(" ".join(sentence() for _ in range(6)) for _ in range(10)) + "\n"
    )
    chats = []
    for _ in range(30):
        subject, obj = rng.choice(SUBJECTS), rng.choice(OBJECTS)
        chats.append(
            {
                "messages": [
                    {"role": "user", "content": f"What does {subject} see?"},
                    {"role": "assistant", "content": f"{subject.capitalize()} sees {obj}."},
                ]
            }
        )
    (orig / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    tasks = []
    for a in range(6):
        for b in range(5):
            tasks.append(
                {"id": f"{a}+{b}", "family": "addition", "difficulty": 1, "prompt": f"{a} + {b}", "answer": str(a + b)}
            )
    (orig / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))


def make_project(root: Path, overrides: dict[str, Any] | None = None, seed: int = 0) -> tuple[Path, ProjectPaths]:
    config_path, _, paths = testing.make_project(root, testing.merge(CHAOS_CONFIG, overrides or {}))
    write_corpus(paths.orig, seed)
    return config_path, paths


# --------------------------------------------------------------------------- invariants


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: content hash of files, target of links, kind of anything else."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest() + f":{st.st_mode:o}"
            else:
                out[str(p)] = f"other:{st.st_mode:o}"
    return out


def rework_problems(rework: Path) -> tuple[list[str], int, int]:
    """(problems, records, stray temp files): every rework file must parse whole, ids unique."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    records = 0
    strays = 0
    for p in sorted(rework.rglob("*")):
        if not p.is_file():
            continue
        if p.name.startswith("."):
            strays += 1  # a writer's temp file, never ingested (hidden); counted, not a violation
            continue
        if p.suffix != ".jsonl":
            continue
        data = p.read_bytes()
        if data and not data.endswith(b"\n"):
            problems.append(f"{p}: does not end with a newline (torn write)")
        for n, line in enumerate(data.splitlines(), 1):
            try:
                rec = json.loads(line)
            except ValueError as e:
                problems.append(f"{p}:{n}: not JSON ({e})")
                continue
            if not isinstance(rec, dict):
                problems.append(f"{p}:{n}: not an object")
                continue
            records += 1
            if p.is_relative_to(rework / "pairs"):
                continue  # preference pairs have no id: a cycle's pairs are written once, as one file
            key = str(rec.get("candidate") or rec.get("id"))  # task records keep the task id in "id"
            if key in seen:
                problems.append(f"{p}:{n}: record id {key} also in {seen[key]}")
            seen[key] = f"{p.name}:{n}"
    return problems, records, strays


def current_problem(models: Path) -> str | None:
    """None when ``current`` is absent (no generation yet) or names a generation that loads and runs."""
    reg = Registry(models)
    try:
        n = reg.current()
    except SelfloopError as e:
        return str(e)
    if n is None:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = reg.path(n)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        ids = tok("The cat sees the river.", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits
    except Exception as e:  # anything at all: the point is that it loads
        return f"current -> {path.name} does not load: {type(e).__name__}: {e}"
    if not torch.isfinite(logits).all():
        return f"current -> {path.name} gives non-finite logits"
    return None


def check_invariants(paths: ProjectPaths, orig_before: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    """What must hold whenever the daemon is down, however it went down. Returns (violations, counts)."""
    violations: list[str] = []
    now = tree_snapshot(paths.orig)
    if now != orig_before:
        changed = sorted(set(now.items()) ^ set(orig_before.items()))
        violations.append(f"orig changed: {changed[:3]}")
    problems, records, strays = rework_problems(paths.rework)
    violations += problems
    if (p := current_problem(paths.models)) is not None:
        violations.append(p)
    if paths.db.exists():
        with Store.open(paths.db, readonly=True) as s:
            result = s.scalar("PRAGMA integrity_check")
            if result != "ok":
                violations.append(f"integrity_check: {result}")
    return violations, {"rework_records": records, "rework_temp_files": strays}


# --------------------------------------------------------------------------- the daemon


class DaemonProcess:
    """``selfloop run --headless`` as a child, its output appended to daemon.log."""

    def __init__(self, config_path: Path):
        self.root = config_path.parent
        self.log = open(self.root / "daemon.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selfloop", "run", "--headless", "-c", str(config_path)],
            cwd=self.root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill_tree(self) -> list[int]:
        """SIGSTOP the daemon, collect its descendants, SIGKILL them all; returns the pids killed."""
        try:
            root = psutil.Process(self.pid)
            root.suspend()  # no new child can appear while the tree is collected
            tree = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()
        self.log.close()
        pids = [p.pid for p in tree]
        _reap_wait(pids)
        return pids

    def stop(self, timeout: float = 120) -> int:
        """Graceful stop (SIGTERM); kills the tree if it does not stop in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            return -9
        self.log.close()
        return rc

    def tail(self, n: int = 3000) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")[-n:]


def _reap_wait(pids: list[int], timeout: float = 10) -> None:
    """Wait until the killed processes are gone (children of the daemon are reaped by init)."""
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pids):
        time.sleep(0.05)


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


# --------------------------------------------------------------------------- observing


@dataclass
class Where:
    """Where the daemon is, from the store: startup, idle, a phase running, or the boundary after one."""

    label: str
    cycle_id: int | None = None
    generation: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def where(db: Path) -> Where:
    if not db.exists():
        return Where("startup")
    try:
        with Store.open(db, readonly=True) as s:
            row = s.query("SELECT id, generation, status, detail FROM cycles ORDER BY id DESC LIMIT 1")
            state = s.get_meta("daemon.state")
    except Exception:  # the file exists but is still being created or migrated
        return Where("startup")
    if row and row[0]["status"] in ("running", "interrupted"):
        detail = json.loads(row[0]["detail"])
        phases = detail.get("phases", {})
        label = "start"
        for name in PHASES:
            st = phases.get(name, {}).get("status")
            if st in ("running", "interrupted"):
                label = name
                break
            if st == "done":
                label = f"after {name}"
        return Where(label, row[0]["id"], row[0]["generation"], detail)
    return Where("startup" if state in (None, "starting") else "idle" if state in ("idle", "cycle") else state)


def started_a_cycle(db: Path, since: float) -> bool:
    """Whether a daemon spawned at ``since`` got as far as starting (or resuming) a cycle."""
    if not db.exists():
        return False
    with Store.open(db, readonly=True) as s:
        return bool(s.scalar("SELECT COUNT(*) FROM events WHERE kind = 'cycle' AND ts > ?", (since,)))


def cycles_in_flight(db: Path) -> int:
    """Cycles not yet done: running, or interrupted and waiting to resume."""
    with Store.open(db, readonly=True) as s:
        return int(s.scalar("SELECT COUNT(*) FROM cycles WHERE status IN ('running', 'interrupted')"))


def phase_durations(db: Path) -> dict[str, float]:
    """The latest non-trivial duration of each phase, from finished cycles."""
    out: dict[str, float] = {}
    if not db.exists():
        return out
    with Store.open(db, readonly=True) as s:
        for row in s.query("SELECT detail FROM cycles WHERE status = 'done' ORDER BY id"):
            for name, ph in json.loads(row["detail"]).get("phases", {}).items():
                if "skipped" in (ph.get("out") or {}):
                    continue
                if ph.get("finished") and ph.get("started"):
                    out[name] = ph["finished"] - ph["started"]
    return out


# --------------------------------------------------------------------------- one trial


@dataclass
class Trial:
    index: int
    target: str
    landed: str = ""
    delay_s: float = 0.0
    cycle_id: int | None = None
    generation: int | None = None
    killed_processes: int = 0
    resumed: bool | None = None  # None: no cycle was in flight
    recovery_s: float | None = None
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Chaos:
    def __init__(
        self, workdir: Path, *, seed: int = 0, resume_timeout: float = 600, overrides: dict[str, Any] | None = None
    ):
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.resume_timeout = resume_timeout
        self.config_path, self.paths = make_project(workdir / "project", overrides, seed)
        self.orig_before = tree_snapshot(self.paths.orig)
        self.daemon: DaemonProcess | None = None
        self.startup_s = DEFAULT_DURATION_S["startup"]
        self.daemon_pids: list[int] = []
        self.startups: list[float] = []  # measured spawn-to-first-cycle times

    def start(self) -> DaemonProcess:
        self.daemon = DaemonProcess(self.config_path)
        self.daemon_pids.append(self.daemon.pid)
        return self.daemon

    def _wait_target(self, target: str) -> float:
        """Block until the daemon is at ``target`` plus a random share of its usual length; returns that share."""
        d = self.daemon
        assert d is not None
        if target == "startup":
            delay = self.rng.uniform(0, self.startup_s)
            time.sleep(max(0.0, delay - (time.time() - d.started)))
            return delay
        durations = {**DEFAULT_DURATION_S, **phase_durations(self.paths.db)}
        delay = self.rng.uniform(0, durations.get(target, 1.0))
        deadline = time.time() + self.resume_timeout
        seen_at: float | None = None
        misses = 0
        pending: set[int] = set()  # cycles seen before their target phase was done
        while time.time() < deadline:
            if not d.alive():
                raise RuntimeError(f"daemon exited {d.proc.returncode} while waiting for {target}:\n{d.tail()}")
            w = where(self.paths.db)
            now = time.time()
            if target == "idle":
                at, passed = w.label == "idle", False
            else:
                ph = w.detail.get("phases", {}).get(target, {})
                # rework and judge are skipped while there is no generation yet: wait for a cycle that runs them
                real = target not in ("rework", "judge") or Registry(self.paths.models).current() is not None
                at = w.label == target and real
                if w.cycle_id is not None and ph.get("status") != "done":
                    pending.add(w.cycle_id)
                passed = w.cycle_id in pending and ph.get("status") == "done" and "skipped" not in (ph.get("out") or {})
            if at:
                seen_at = now if seen_at is None else seen_at
                if now - seen_at >= delay:
                    return delay
            elif seen_at is not None:
                # It ended before the kill moment: aim again next time, within the length just seen.
                misses += 1
                if misses >= 3:
                    return delay
                delay = self.rng.uniform(0, now - seen_at)
                seen_at = None
                pending.discard(w.cycle_id if w.cycle_id is not None else -1)
            elif passed:
                return 0.0  # shorter than one poll: kill right after it
            time.sleep(0.005)
        return delay

    def trial(self, index: int, target: str) -> Trial:
        t = Trial(index, target)
        if target == "startup":
            if self.daemon is not None and self.daemon.alive():
                rc = self.daemon.stop()
                if rc != 0:
                    t.violations.append(f"graceful stop before the startup trial exited {rc}")
            self.start()
        elif self.daemon is None or not self.daemon.alive():
            self.start()
        t.delay_s = round(self._wait_target(target), 3)
        assert self.daemon is not None
        spawned = self.daemon.started
        killed = self.daemon.kill_tree()
        t.killed_processes = len(killed)
        landed = where(self.paths.db)  # nothing is committed after SIGKILL: this is where it died
        t.landed, t.cycle_id, t.generation = landed.label, landed.cycle_id, landed.generation
        if not started_a_cycle(self.paths.db, spawned):
            t.landed = "startup"  # the cycle row is a predecessor's; this daemon had not reached it
        left = _alive(killed)
        if left:
            t.violations.append(f"processes of the killed tree still alive: {left}")
        violations, t.counts = check_invariants(self.paths, self.orig_before)
        t.violations += violations
        # Restart; the interrupted cycle must resume and finish.
        started = time.time()
        d = self.start()
        if t.cycle_id is None:
            t.resumed = None
            return t
        deadline = started + self.resume_timeout
        status = None
        while time.time() < deadline and d.alive():
            with Store.open(self.paths.db, readonly=True) as s:
                status = s.scalar("SELECT status FROM cycles WHERE id = ?", (t.cycle_id,))
            if status in ("done", "failed"):
                break
            time.sleep(0.2)
        t.recovery_s = round(time.time() - started, 2)
        t.resumed = status == "done"
        if status != "done":
            err = ""
            if self.paths.db.exists():
                with Store.open(self.paths.db, readonly=True) as s:
                    err = s.scalar("SELECT error FROM cycles WHERE id = ?", (t.cycle_id,)) or ""
            t.violations.append(
                f"cycle {t.cycle_id} did not resume to done (status {status}{': ' + err if err else ''})"
                + ("" if d.alive() else f"; daemon exited:\n{d.tail()}")
            )
        return t

    def measure_startup(self) -> None:
        """How long the current daemon took from spawn to its first cycle: the window of startup kills."""
        if self.daemon is None or not self.paths.db.exists():
            return
        with Store.open(self.paths.db, readonly=True) as s:
            first = s.scalar("SELECT MIN(ts) FROM events WHERE kind = 'cycle' AND ts > ?", (self.daemon.started,))
        if first is not None:
            self.startups.append(first - self.daemon.started)
            self.startup_s = statistics.median(self.startups)

    def finish(self) -> dict[str, Any]:
        """Stop the last daemon gracefully, check everything once more, count what is left behind."""
        out: dict[str, Any] = {"violations": []}
        if self.daemon is not None and self.daemon.alive():
            # Let the last restart finish the cycle it resumed, so the stop lands on an idle daemon
            # and every cycle must end up done (a stop mid-cycle would rightly leave it interrupted).
            deadline = time.time() + self.resume_timeout
            while (
                self.daemon.alive()
                and time.time() < deadline
                and not (started_a_cycle(self.paths.db, self.daemon.started) and not cycles_in_flight(self.paths.db))
            ):
                time.sleep(0.2)
            rc = self.daemon.stop()
            if rc != 0:
                out["violations"].append(f"final graceful stop exited {rc}")
        left = _alive(self.daemon_pids)
        if left:
            out["violations"].append(f"daemon processes still alive: {left}")
        violations, counts = check_invariants(self.paths, self.orig_before)
        out["violations"] += violations
        out.update(counts)
        with Store.open(self.paths.db, readonly=True) as s:
            out["cycles_done"] = s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'done'")
            out["cycles_failed"] = s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'failed'")
            # "running" after a graceful stop is a bug (the daemon marks what it stops "interrupted");
            # "interrupted" is a cycle a new interval started just before the stop: it resumes next time.
            out["cycles_left_running"] = s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'running'")
            out["cycles_interrupted"] = s.scalar("SELECT COUNT(*) FROM cycles WHERE status = 'interrupted'")
            out["generations"] = s.scalar("SELECT COUNT(*) FROM generations")
            out["promoted"] = s.scalar("SELECT COUNT(*) FROM events WHERE kind = 'promoted'")
            out["candidates"] = s.scalar("SELECT COUNT(*) FROM candidates")
        if out["cycles_left_running"]:
            out["violations"].append(f"{out['cycles_left_running']} cycle(s) left running after a graceful stop")
        out["leftover_containers"] = leftover_containers(self.daemon_pids)
        return out


def leftover_containers(pids: list[int]) -> list[str]:
    """Sandbox containers still present whose owner is one of our (dead) daemons; removed after counting."""
    try:
        import docker

        from selfloop.sandbox.backends.docker import OWNER_LABEL
    except ImportError:
        return []
    import socket

    tags = {f"{socket.gethostname()}:{pid}" for pid in pids}
    try:
        client = docker.from_env()
    except Exception:
        return []  # no engine: the daemon used bwrap or process sandboxes
    try:
        found = [
            c
            for c in client.containers.list(all=True, filters={"label": OWNER_LABEL})
            if c.labels.get(OWNER_LABEL) in tags
        ]
        for c in found:
            c.remove(force=True)
        return [c.short_id for c in found]
    finally:
        client.close()


# --------------------------------------------------------------------------- figures


def summarize(trials: list[Trial], final: dict[str, Any], seconds: float) -> dict[str, Any]:
    recoveries = sorted(t.recovery_s for t in trials if t.recovery_s is not None)
    in_flight = [t for t in trials if t.resumed is not None]
    return {
        "trials": len(trials),
        "targets": dict(Counter(t.target for t in trials)),
        "landed": dict(Counter(t.landed for t in trials)),
        "kills_with_cycle_in_flight": len(in_flight),
        "resumed_and_completed": sum(1 for t in in_flight if t.resumed),
        "trials_with_violations": sum(1 for t in trials if t.violations),
        "violations": [v for t in trials for v in t.violations] + final["violations"],
        "recovery_s": {
            "median": _pct(recoveries, 50),
            "p90": _pct(recoveries, 90),
            "max": recoveries[-1] if recoveries else None,
        },
        "processes_killed_per_trial": _pct(sorted(t.killed_processes for t in trials), 50),
        "final": {k: v for k, v in final.items() if k != "violations"},
        "seconds": round(seconds, 1),
    }


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return xs[min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1)]


def render(summary: dict[str, Any], trials: list[Trial]) -> str:
    lines = ["", "chaos: kill -9 of the daemon's process tree at random moments, restart, invariants", ""]
    lines.append(
        f"{'#':>3}  {'target':<9} {'landed in':<16} {'cycle':>5} {'gen':>4} "
        f"{'procs':>5} {'resumed':>8} {'recover s':>9}  violations"
    )
    for t in trials:
        resumed = "-" if t.resumed is None else ("yes" if t.resumed else "NO")
        lines.append(
            f"{t.index:>3}  {t.target:<9} {t.landed:<16} {t.cycle_id or '-':>5} "
            f"{'-' if t.generation is None else t.generation:>4} "
            f"{t.killed_processes:>5} {resumed:>8} "
            f"{t.recovery_s if t.recovery_s is not None else '-':>9}  {len(t.violations)}"
        )
    s = summary
    lines += [
        "",
        f"trials: {s['trials']}; kills with a cycle in flight: {s['kills_with_cycle_in_flight']}, "
        f"resumed and completed: {s['resumed_and_completed']}",
        "landed: " + ", ".join(f"{k} {v}" for k, v in sorted(s["landed"].items())),
        f"recovery (restart to the interrupted cycle done): median {s['recovery_s']['median']} s, "
        f"p90 {s['recovery_s']['p90']} s, max {s['recovery_s']['max']} s",
        f"after the last graceful stop: {s['final']}",
        f"invariant violations: {len(s['violations'])} (in {s['trials_with_violations']} trials)",
    ]
    lines += [f"  - {v}" for v in s["violations"][:20]]
    lines.append(f"wall time: {s['seconds']} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def run_chaos(
    trials: int,
    *,
    quick: bool = False,
    seed: int = 0,
    workdir: Path | None = None,
    resume_timeout: float = 600,
    log: Callable[[str], None] = lambda m: print(m, flush=True),
) -> tuple[dict[str, Any], list[Trial]]:
    """Run ``trials`` kill/restart trials on a fresh project; returns (summary, trials)."""
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="selfloop-chaos-")) if workdir is None else workdir
    targets = QUICK_TARGETS if quick else TARGETS
    chaos = Chaos(workdir, seed=seed, resume_timeout=resume_timeout)
    started = time.time()
    done: list[Trial] = []
    try:
        for i in range(trials):
            target = targets[i % len(targets)]
            t = chaos.trial(i, target)
            chaos.measure_startup()
            done.append(t)
            log(
                f"trial {i:>3}: target {target:<9} landed {t.landed:<16} cycle {t.cycle_id} "
                f"resumed {t.resumed} in {t.recovery_s} s; {len(t.violations)} violation(s)"
                + "".join(f"\n    - {v}" for v in t.violations)
            )
        final = chaos.finish()
    except BaseException:
        if chaos.daemon is not None and chaos.daemon.alive():
            chaos.daemon.kill_tree()
        log(f"chaos aborted; the project is kept in {workdir}")
        raise
    summary = summarize(done, final, time.time() - started)
    if own and not summary["violations"]:
        shutil.rmtree(workdir, ignore_errors=True)
    elif summary["violations"]:
        log(f"project kept for inspection: {workdir}")
    return summary, done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50, help="kill/restart trials (default 50)")
    p.add_argument("--quick", action="store_true", help=f"only the targets {', '.join(QUICK_TARGETS)} (the CI subset)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--workdir", type=Path, help="project directory (default: a temp dir, removed when all is well)")
    p.add_argument(
        "--resume-timeout", type=float, default=600, help="seconds an interrupted cycle may take to complete"
    )
    p.add_argument("--json", type=Path, help="also write the figures and every trial to this JSON file")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the daemon tree is killed too (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary, trials = run_chaos(
        args.trials, quick=args.quick, seed=args.seed, workdir=args.workdir, resume_timeout=args.resume_timeout
    )
    print(render(summary, trials))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}, indent=2))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
