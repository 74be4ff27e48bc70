"""The daemon's side of frontier growth: one step per family in a child process, recorded in the store.

Does not cover: what a step does (``selfloop.frontier.run``) or when steps run (``selfloop.loop.daemon``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfloop.config import FrontierConfig, ProjectPaths, SandboxConfig
from selfloop.errors import SelfloopError
from selfloop.frontier.families import load_family
from selfloop.store import Store
from selfloop.store.frontier import record_step
from selfloop.train.launch import child_env, failure_reason, tracked


class FrontierInterrupted(SelfloopError):
    """A stop was requested while a frontier step ran; the step is simply done again after a restart."""


def run_step(
    cfg: FrontierConfig,
    spec: str,
    paths: ProjectPaths,
    store: Store,
    *,
    should_stop: Callable[[], bool],
    sandbox: SandboxConfig | None = None,
) -> dict[str, Any]:
    """Run one step of family ``spec`` to the end and record it; returns the step's result."""
    family = load_family(spec)
    log_path = paths.logs / f"frontier-{family.name}.log"
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.frontier.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="step-", dir=paths.frontier) as tmp:
        config, out, progress = (Path(tmp) / name for name in ("frontier_config.json", "result.json", "progress.json"))
        config.write_text(cfg.model_dump_json())
        sandbox_json = Path(tmp) / "sandbox_config.json"
        sandbox_json.write_text((sandbox or SandboxConfig()).model_dump_json())
        argv = [
            sys.executable, "-m", "selfloop.frontier.run", "--config", str(config), "--sandbox", str(sandbox_json),
            "--family", spec, "--progress", str(progress),
            "--home", str(paths.frontier / family.name), "--rework", str(paths.frontier_rework / family.name),
            "--out", str(out), "--watch-pid", str(os.getpid()),
        ]  # fmt: skip
        with (
            log_path.open("a", encoding="utf-8") as log,
            tracked(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env())) as proc,
        ):
            while proc.poll() is None:
                publish_progress(store, progress, family.name)
                if should_stop():
                    proc.terminate()  # every write of a step is atomic: a killed step leaves the champion as it was
                    proc.wait()
                    raise FrontierInterrupted(f"frontier step of {family.name} stopped; it runs again after a restart")
                time.sleep(0.5)
        store.clear_progress("frontier")
        if proc.returncode != 0 or not out.is_file():
            raise SelfloopError(
                f"frontier step of {family.name} failed (exit {proc.returncode}): {failure_reason(log_path)}"
            )
        result = json.loads(out.read_text())
    if result["kind"] == "done":
        return result  # nothing ran: not a step
    record_step(store, result)
    store.event("frontier", summary(result), family=family.name, generation=result["generation"])
    return result


def publish_progress(store: Store, path: Path, family: str) -> None:
    """The child's latest progress as the dashboard's ``frontier`` bar (a missing or half-read file: next time)."""
    try:
        p = json.loads(path.read_text())
        store.set_progress("frontier", int(p["done"]), int(p["total"]), "steps", what=f"{family}: {p['what']}")
    except (OSError, ValueError, KeyError, TypeError):
        pass


def summary(result: dict[str, Any]) -> str:
    """One line for the event log."""
    acc = result.get("accuracy_by_level") or {}
    levels = " ".join(f"{lv}:{a:.2f}" for lv, a in sorted(acc.items(), key=lambda kv: int(kv[0])))
    if result["kind"] == "gen0":
        return f"frontier {result['family']}: generation 0 trained ({levels})"
    labels = result.get("labels") or {}
    audited = labels.get("audited_label_accuracy")
    head = (
        f"frontier {result['family']} round {result['round']} at level {result['level']}: "
        f"{labels.get('kept', 0)} {labels.get('source', '')} labels, yield {labels.get('yield', 0):.2f}"
        + (f", audited {audited:.2f}" if audited is not None else "")
    )
    verdict = f"promoted gen {result['generation']}" if result["promoted"] else "kept the champion"
    return f"{head}; {verdict}: {result['reason']}" + (f" ({levels})" if result["promoted"] else "")
