"""Reliability: the chaos harness in CI. A few kill -9 trials of the real daemon (training,
judging, evaluating); every invariant must hold after each kill and every interrupted
cycle must resume and complete. `make chaos` runs the full 50.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_kill_9_in_train_judge_and_evaluate_then_restart_keeps_every_invariant(tmp_path):
    out = tmp_path / "chaos.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--trials",
            "3",
            "--quick",
            "--seed",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    summary, trials = report["summary"], report["trials"]
    assert summary["violations"] == [] and summary["trials"] == 3
    assert [t["target"] for t in trials] == ["train", "judge", "evaluate"]
    in_flight = [t for t in trials if t["resumed"] is not None]
    assert in_flight and all(t["resumed"] for t in in_flight)  # the interrupted cycles resumed and completed
    assert all(t["killed_processes"] >= 1 for t in trials)
    final = summary["final"]
    assert final["cycles_left_running"] == 0 and final["cycles_done"] >= 3 and final["cycles_failed"] == 0
    assert final["leftover_containers"] == []
    assert "invariant violations: 0" in proc.stdout
