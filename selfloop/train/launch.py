"""Launching the training child from the parent (the daemon or `selfloop cycle`).

Covers: the child's argv per ``train.launcher.kind`` (python | torchrun | accelerate; pure, so the scale-out path is
testable without GPUs), running it on a prepared run dir (``selfloop.train.rundir``) with its output in
``RUNDIR/train.log``, reading its result, and killing every child with its workers when the daemon must exit now.
Training in a child process returns all its memory to the OS when it ends.

Does not cover: what the child does (``selfloop.train.run``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selfloop.config import LauncherConfig
from selfloop.errors import SelfloopError
from selfloop.train.rundir import EXIT_INTERRUPTED, FAILURE_PREFIX, RunDir


class TrainingInterrupted(SelfloopError):
    """The child stopped on SIGTERM after saving a checkpoint; launching again resumes it."""


# accelerate flags that already choose its distributed mode; without one, several
# processes need --multi_gpu (see build_argv).
ACCELERATE_MODE_FLAGS = ("--multi_gpu", "--use_fsdp", "--use_deepspeed", "--use_megatron_lm", "--tpu", "--config_file")


def build_argv(launcher: LauncherConfig, child_args: list[str], python: str = sys.executable) -> list[str]:
    """The command line that runs ``python -m selfloop.train CHILD_ARGS`` under ``launcher``.

    The child is the same module under every launcher; torchrun and accelerate start
    ``nproc_per_node`` copies of it and the Trainer inside does DDP (FSDP / DeepSpeed
    through accelerate's own flags in ``extra_args``). Multi-node: this process starts
    node 0's launcher; every other node runs the same command line (the first line of
    ``train.log``) against the same project on a shared filesystem.
    """
    if launcher.kind == "python":
        head = [python, "-m", "selfloop.train"]
    elif launcher.kind == "torchrun":
        head = [
            python,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={launcher.nproc_per_node}",
            f"--nnodes={launcher.nnodes}",
        ]
        if launcher.rdzv_endpoint:
            head += ["--rdzv_backend=c10d", f"--rdzv_endpoint={launcher.rdzv_endpoint}"]
        else:
            head.append("--standalone")  # one node on a free local port: two runs on one host never collide
        head += [*launcher.extra_args, "-m", "selfloop.train"]
    else:  # accelerate
        processes = launcher.nproc_per_node * launcher.nnodes
        head = [
            python,
            "-m",
            "accelerate.commands.launch",
            f"--num_processes={processes}",
            f"--num_machines={launcher.nnodes}",
        ]
        chosen = any(a.split("=", 1)[0] in ACCELERATE_MODE_FLAGS for a in launcher.extra_args)
        if processes > 1 and not chosen:
            # accelerate's torch.distributed.run path. Without it (and without an accelerate
            # config file) a machine with fewer than two GPUs gets accelerate's "simple"
            # launcher: ONE process, whatever --num_processes says. On CPU the workers use gloo.
            head.append("--multi_gpu")
        if launcher.rdzv_endpoint:
            host, _, port = launcher.rdzv_endpoint.rpartition(":")
            head += [f"--main_process_ip={host}", f"--main_process_port={port}", f"--machine_rank={launcher.node_rank}"]
        elif processes > 1:
            head.append("--main_process_port=0")  # a free local port, as torchrun --standalone
        head += [*launcher.extra_args, "-m", "selfloop.train"]
    return head + child_args


def child_args(run_dir: Path) -> list[str]:
    """The child reads everything else from the run dir's resolved config."""
    return [
        "--out",
        str(Path(run_dir).resolve()),
        # The child runs in a session of its own; it watches us so that it stops
        # (saving a checkpoint) if we die without telling it (kill -9, OOM killer).
        "--watch-pid",
        str(os.getpid()),
    ]


# glibc malloc for the training child: every step frees and reallocates the same large
# activation and gradient buffers; with the defaults, buffers above the (dynamic) mmap
# threshold are unmapped and mapped again and the heap top is trimmed, so each step pays
# fresh page faults. Keeping them in the heap made steps ~17% faster on the default model
# (148 vs ~180 ms on 2 CPU cores). The cost, a peak-sized heap, ends with the child.
# Ignored by other allocators; a value already in the environment wins.
CHILD_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(4 * 1024**3)}


def child_env() -> dict[str, str]:
    return {**CHILD_MALLOC, **os.environ}


# Running training children, so a forced exit can kill them (kill_active_children).
_active: set[subprocess.Popen] = set()
_active_lock = threading.Lock()


def launch_training(run_dir: Path, *, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run the training child on ``run_dir`` to completion and return its ``result.json``.

    The run dir holds the data snapshot and the resolved config (``RunDir.write_config``),
    whose launcher starts the child. Resumes on its own when it already holds checkpoints. When
    ``should_stop()`` turns true (the daemon is stopping), or this process is
    interrupted (Ctrl-C, an exception), the child gets SIGTERM and saves a
    checkpoint; then ``TrainingInterrupted`` (or the interruption) propagates.
    torchrun and accelerate pass SIGTERM on to their workers.
    """
    run = RunDir(run_dir)
    cfg, values = run.read_config()
    generation = values.generation
    argv = build_argv(cfg.train.launcher, child_args(run.path))
    result_path = run.result
    result_path.unlink(missing_ok=True)
    log_path = run.log
    with log_path.open("ab") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())  # the command other nodes run in a multi-node job
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=child_env())
        with _active_lock:
            _active.add(proc)
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
        finally:
            with _active_lock:
                _active.discard(proc)
    result = _read_result(result_path)
    # A launcher's own exit code after SIGTERM varies (torchrun reports its workers'
    # failure); the status rank 0 wrote is what tells an interruption apart.
    if rc in (EXIT_INTERRUPTED, -signal.SIGTERM) or (result or {}).get("status") == "interrupted":
        raise TrainingInterrupted(
            f"training of generation {generation} was interrupted; its checkpoint is in {run_dir}"
        )
    if rc != 0 or result is None:
        raise SelfloopError(f"training of generation {generation} failed (exit {rc}): {failure_reason(log_path)}")
    return result


@contextmanager
def tracked(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Count ``proc`` among the children a forced exit kills, while the block runs."""
    with _active_lock:
        _active.add(proc)
    try:
        yield proc
    finally:
        with _active_lock:
            _active.discard(proc)


def kill_active_children() -> int:
    """SIGKILL every running training child and all its descendants; returns how many processes.

    For a forced exit only (the graceful path is SIGTERM, which saves a checkpoint).
    torchrun and accelerate start each worker in a session of its own, so killing
    the launcher's process group would leave the workers running (blocked in a
    collective until its timeout); the whole tree is collected first instead.
    """
    import psutil  # a dependency of accelerate

    with _active_lock:
        procs = list(_active)
    killed = 0
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in tree:
            try:
                p.kill()
                killed += 1
            except psutil.NoSuchProcess:
                pass
    return killed


def _read_result(path: Path) -> dict[str, Any] | None:
    """The child's result, or None when it wrote none (it writes it whole, by rename)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def failure_reason(path: Path, lines: int = 3) -> str:
    """Why the child failed, from its log: its own error line, else the last exception line, else the tail."""
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    for prefix in (FAILURE_PREFIX, None):
        for line in reversed(text):
            if prefix and line.startswith(prefix):
                return line.removeprefix(prefix)
            if prefix is None and _EXCEPTION_LINE.match(line):
                return line
    return " | ".join(text[-lines:]) if text else "no output"


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b: ")
