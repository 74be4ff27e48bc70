"""Launching the training child from the parent (the daemon or `selfloop cycle`).

Covers: building the child's argv for ``train.launcher.kind`` (python |
torchrun | accelerate; pure, so the scale-out path is testable without GPUs),
running it with its output in ``RUNDIR/train.log``, and reading its result.
Training in a child process returns all its memory to the OS when it ends.

Does not cover: what the child does (``selfloop.train.run``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfloop.config import LauncherConfig
from selfloop.errors import SelfloopError

EXIT_INTERRUPTED = 3  # keep in step with selfloop.train.run (not imported: it pulls in transformers)


class TrainingInterrupted(SelfloopError):
    """The child stopped on SIGTERM after saving a checkpoint; launching again resumes it."""


def build_argv(launcher: LauncherConfig, child_args: list[str], python: str = sys.executable) -> list[str]:
    """The command line that runs ``python -m selfloop.train CHILD_ARGS`` under ``launcher``."""
    if launcher.kind == "python":
        head = [python, "-m", "selfloop.train"]
    elif launcher.kind == "torchrun":
        head = [python, "-m", "torch.distributed.run", f"--nproc_per_node={launcher.nproc_per_node}", f"--nnodes={launcher.nnodes}"]
        if launcher.rdzv_endpoint:
            head += ["--rdzv_backend=c10d", f"--rdzv_endpoint={launcher.rdzv_endpoint}"]
        head += [*launcher.extra_args, "-m", "selfloop.train"]
    else:  # accelerate
        head = [
            python, "-m", "accelerate.commands.launch",
            f"--num_processes={launcher.nproc_per_node * launcher.nnodes}", f"--num_machines={launcher.nnodes}",
        ]
        if launcher.rdzv_endpoint:
            host, _, port = launcher.rdzv_endpoint.rpartition(":")
            head += [f"--main_process_ip={host}", f"--main_process_port={port}"]
        head += [*launcher.extra_args, "-m", "selfloop.train"]
    return head + child_args


def child_args(config_path: Path, generation: int, run_dir: Path, init: str, steps: int) -> list[str]:
    return [
        "--config", str(Path(config_path).resolve()), "--generation", str(generation),
        "--out", str(Path(run_dir).resolve()), "--init", init, "--steps", str(steps),
    ]


def launch_training(
    launcher: LauncherConfig, config_path: Path, generation: int, run_dir: Path, *, init: str, steps: int,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run the training child to completion and return its ``result.json``.

    Resumes on its own when ``run_dir`` already holds checkpoints. When
    ``should_stop()`` turns true (the daemon is stopping), or this process is
    interrupted (Ctrl-C, an exception), the child gets SIGTERM and saves a
    checkpoint; then ``TrainingInterrupted`` (or the interruption) propagates.
    """
    run_dir = Path(run_dir)
    argv = build_argv(launcher, child_args(config_path, generation, run_dir, init, steps))
    (run_dir / "result.json").unlink(missing_ok=True)
    log_path = run_dir / "train.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while (rc := _wait(proc, 0.5)) is None:
                if should_stop is not None and should_stop():
                    proc.send_signal(signal.SIGTERM)
                    rc = proc.wait()
                    break
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    if rc == EXIT_INTERRUPTED or rc == -signal.SIGTERM:
        raise TrainingInterrupted(f"training of generation {generation} was interrupted; its checkpoint is in {run_dir}")
    result_path = run_dir / "result.json"
    if rc != 0 or not result_path.is_file():
        raise SelfloopError(f"training of generation {generation} failed (exit {rc}): {_tail(log_path)}")
    return json.loads(result_path.read_text())


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "no output"
