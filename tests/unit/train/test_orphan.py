"""A training child whose launcher dies by kill -9 saves a checkpoint and stops on its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from lifecycle_helpers import prepared_run

pytestmark = pytest.mark.slow


def test_orphaned_training_child_checkpoints_and_exits(tmp_path):
    config_path, cfg, paths, run_dir = prepared_run(tmp_path, {"train": {"save_steps": 1000, "log_steps": 2}})
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        from pathlib import Path
        from selfloop.config import load_config
        from selfloop.train.launch import launch_training
        from selfloop.train.rundir import RunDir, RunValues
        cfg, paths = load_config(Path({str(config_path)!r}))
        run = RunDir(Path({str(run_dir)!r}))
        run.write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=100000))
        launch_training(run.path)
    """),
        ]
    )
    try:
        deadline = time.time() + 120
        child = None
        while time.time() < deadline and child is None:
            kids = psutil.Process(launcher.pid).children()
            metrics = run_dir / "metrics.jsonl"
            if kids and metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                child = kids[0]
            time.sleep(0.3)
        assert child is not None, "training never started"
    finally:
        launcher.send_signal(signal.SIGKILL)  # the daemon dies without telling its child
        launcher.wait()
    # save_steps is far away: a checkpoint now can only come from the orphan noticing and stopping.
    child.wait(timeout=60)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted"
    assert list(run_dir.rglob("checkpoint-*"))
