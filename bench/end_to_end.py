"""A file dropped into orig -> a promoted generation trained on it (default config).

A fresh ``selfloop init`` project (starter corpus, shipped config.toml). With
``--via daemon`` (the default) ``selfloop run --headless`` trains generation 0
in its first cycle (untimed); once the daemon is idle (its last cycle ended at
least ``schedule.min_gap_s`` ago) a new prose file is written into
``corpus/orig`` and the clock runs until the cycle that started after the drop
has finished (watcher settle, ingest, rework, judge, train, evaluate, gate,
promote). ``--via cycle`` does the same with two ``selfloop cycle --once`` runs
(its first phase ingests orig). Each phase's seconds come from the cycle's
record in the state database.

Generation 0's setup run may use fewer steps than ``train.gen0_steps``
(``SETUP_GEN0_STEPS``) so the benchmark fits a shared machine; the timed cycle
uses the shipped defaults unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, say
from bench.project import TINY, synthetic_file
from selfloop.testing import make_project

NAME = "end_to_end"
SETUP_GEN0_STEPS = 300


def selfloop(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfloop", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def phase_seconds(db: Path) -> dict[str, Any]:
    from selfloop.store import Store

    with Store.open(db) as store:
        row = store.query("SELECT detail, status, generation FROM cycles ORDER BY id DESC LIMIT 1")[0]
    phases = json.loads(row["detail"])["phases"]
    return {name: round(p["finished"] - p["started"], 2) for name, p in phases.items() if "finished" in p}


def latest_cycle(db: Path) -> dict[str, Any] | None:
    from selfloop.store import Store

    with Store.open(db) as store:
        rows = store.query("SELECT id, status, started_at, finished_at FROM cycles ORDER BY id DESC LIMIT 1")
    return dict(rows[0]) if rows else None


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited (code {proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def via_daemon(
    config: Path, paths, cfg, setup_steps: int, env: dict[str, str], dropped: Path, min_gap_s: float
) -> dict[str, Any]:
    """``selfloop run --headless``: generation 0 by its first cycle, then the file dropped into the idle daemon."""
    from selfloop.model.registry import Registry

    registry = Registry(paths.models)
    log = (paths.root / "daemon.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfloop", "run", "--headless", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env, "SELFLOOP_TRAIN__GEN0_STEPS": str(setup_steps)},
    )
    try:
        t = time.perf_counter()
        wait_for(
            lambda: registry.current() == 0 and (latest_cycle(paths.db) or {}).get("status") == "done",
            3600,
            "generation 0 (the daemon's first cycle)",
            proc,
        )
        setup_s = time.perf_counter() - t
        # An idle daemon: the last cycle ended at least min_gap_s ago (the daemon's, env included).
        ended = latest_cycle(paths.db)["finished_at"]
        time.sleep(max(0.0, ended + min_gap_s - time.time()))
        say("[e2e] dropping a file into the idle daemon's orig ...")
        start = time.perf_counter()
        dropped_at = time.time()
        dropped.write_text(synthetic_file(424242, 20_000), encoding="utf-8")

        def decided() -> bool:
            c = latest_cycle(paths.db)
            return bool(c and c["started_at"] >= dropped_at and c["status"] in ("done", "failed"))

        wait_for(decided, 3600, "the cycle that picks up the dropped file", proc)
        seconds = time.perf_counter() - start
        return {
            "setup_seconds": round(setup_s, 1),
            "seconds": round(seconds, 2),
            "status": latest_cycle(paths.db)["status"],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=cfg.schedule.stop_timeout_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def via_cycle(config: Path, paths, setup_steps: int, env: dict[str, str], dropped: Path) -> dict[str, Any]:
    """``selfloop cycle --once`` twice: generation 0, then the cycle after the file is dropped."""
    from selfloop.model.registry import Registry

    t = time.perf_counter()
    setup = selfloop(config, "cycle", "--once", env={**env, "SELFLOOP_TRAIN__GEN0_STEPS": str(setup_steps)})
    if setup.returncode != 0 or Registry(paths.models).current() != 0:
        raise RuntimeError(f"generation 0 setup failed: {(setup.stderr or setup.stdout).strip()[-500:]}")
    setup_s = time.perf_counter() - t
    say("[e2e] dropping a file into orig and running one cycle ...")
    start = time.perf_counter()
    dropped.write_text(synthetic_file(424242, 20_000), encoding="utf-8")
    cycle = selfloop(config, "cycle", "--once", env=env)
    seconds = time.perf_counter() - start
    if cycle.returncode != 0:
        raise RuntimeError(f"the cycle failed: {cycle.stderr.strip()[-500:]}")
    return {"setup_seconds": round(setup_s, 1), "seconds": round(seconds, 2), "status": "done"}


def run(quick: bool, workdir: Path, method: str) -> Recorder:
    from selfloop.model.registry import Registry
    from selfloop.store import Store

    rec = Recorder(NAME, quick, f"python -m bench.end_to_end --via {method}" + (" --quick" if quick else ""))
    config, cfg, paths = make_project(workdir / "proj", TINY if quick else None, starter=True)
    setup_steps = cfg.train.gen0_steps if quick else min(SETUP_GEN0_STEPS, cfg.train.gen0_steps)
    # Quick mode only: no minimum gap between cycles, so the smoke run does not sit idle.
    min_gap_s = 0.0 if quick else cfg.schedule.min_gap_s
    env = {"SELFLOOP_SCHEDULE__MIN_GAP_S": str(min_gap_s)} if quick else {}
    dropped = paths.orig / "prose" / "bench-dropped.txt"
    dropped.parent.mkdir(parents=True, exist_ok=True)
    say(f"[e2e] {method}: generation 0 ({setup_steps} steps) first, untimed ...")
    out = (
        via_daemon(config, paths, cfg, setup_steps, env, dropped, min_gap_s)
        if method == "daemon"
        else via_cycle(config, paths, setup_steps, env, dropped)
    )
    registry = Registry(paths.models)
    current = registry.current()
    with Store.open(paths.db) as store:
        docs = store.scalar(
            "SELECT COUNT(*) FROM documents WHERE file_path LIKE ? AND status = 'active'", ("%bench-dropped.txt",)
        )
    manifest = registry.manifest(1) if 1 in registry.on_disk() else {}
    promoted = current == 1
    phases = phase_seconds(paths.db)
    verdict = "promoted" if promoted else f"not promoted (cycle {out['status']})"
    say(
        f"[e2e] file -> generation 1 {verdict} in {out['seconds']:.1f} s (target <= 120 s); phases: "
        + ", ".join(f"{k} {v}s" for k, v in phases.items())
    )
    rec.figures = {
        "method": {
            "daemon": "selfloop run --headless: the file dropped "
            "into an idle daemon (last cycle ended >= min_gap_s ago)",
            "cycle": "selfloop cycle --once after the drop (its ingest phase picks up the file)",
        }[method],
        "config": "TINY, min_gap_s 0 (quick mode)" if quick else "shipped defaults",
        "setup_gen0_steps": setup_steps,
        **out,
        "promoted": promoted,
        "gate": manifest.get("gate"),
        "dropped_file_documents": docs,
        "trained_on_documents": (manifest.get("data") or {}).get("documents"),
        "phases_s": phases,
        "target_s": 120,
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.end_to_end", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--via", choices=["daemon", "cycle"], default="daemon", help="the daemon (default) or `selfloop cycle --once`"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        rec = run(args.quick, Path(tmp), args.via)
    say(f"[e2e] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
