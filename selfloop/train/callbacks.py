"""Trainer callbacks of the training child: progress reporting and clean stops.

Covers: writing step, loss, learning rate, tokens/s and ETA to the state store
(``train_metrics``) and to ``metrics.jsonl`` and ``metrics.csv`` in the run dir; stopping at the
wall-clock budget; and turning SIGTERM into "save a checkpoint, then stop", at
the same step on every DDP rank.

Does not cover: what is trained or how the run resumes (``selfloop.train.run``).
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from selfloop.lifeline import ParentWatch
from selfloop.store.runs import add_train_metric

# The columns of a metrics row, in the CSV's order.
FIELDS = ("generation", "step", "loss", "lr", "tokens_per_s", "eta_s", "ts")


class MetricsCallback(TrainerCallback):
    """Reports each Trainer log line (rank 0 only) to the store, a JSONL file and a CSV file."""

    def __init__(self, store, generation: int, jsonl: Path, csv_path: Path):
        self.store = store
        self.generation = generation
        self.jsonl = jsonl
        self.csv = csv_path
        self._t0 = time.monotonic()
        self._step0 = 0
        self._last: tuple[float, int] = (self._t0, 0)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run starts at the checkpoint's step; speeds count from here.
        self._t0 = time.monotonic()
        self._step0 = state.global_step
        self._last = (self._t0, state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.monotonic()
        tokens = state.num_input_tokens_seen or 0
        last_t, last_tokens = self._last
        self._last = (now, tokens)
        tokens_per_s = (tokens - last_tokens) / (now - last_t) if now > last_t else None
        done = state.global_step - self._step0
        eta = (now - self._t0) / done * (state.max_steps - state.global_step) if done > 0 else None
        row = {
            "generation": self.generation,
            "step": state.global_step,
            "loss": float(logs["loss"]),
            "lr": float(logs.get("learning_rate", 0.0)),
            "tokens_per_s": tokens_per_s,
            "eta_s": eta,
            "ts": time.time(),
        }
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        header = not self.csv.is_file() or not self.csv.stat().st_size  # a resumed run appends to its file
        with self.csv.open("a", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if header:
                writer.writeheader()
            writer.writerow(row)
        add_train_metric(self.store, row)


class StopCallback(TrainerCallback):
    """Stops at the wall budget (a finished run) or on SIGTERM (an interrupted run).

    Both save a Trainer checkpoint first, so an interrupted run resumes from
    exactly where it stopped instead of from the last ``save_steps`` boundary.
    Under DDP the ranks agree on stopping after every step (one tiny all-reduce):
    SIGTERM or the deadline reach them at slightly different moments, and a rank
    that stopped alone would leave the others waiting in the next step's collective.
    """

    def __init__(self, max_minutes: float, watch_pid: int | None = None):
        self.deadline = time.monotonic() + max_minutes * 60
        self.terminated = False
        self.out_of_time = False
        self.parent = ParentWatch(watch_pid) if watch_pid else None
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.terminated = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.parent is not None and not self.parent.alive():
            self.terminated = True  # orphaned: the daemon died without a SIGTERM for us
        terminated, out_of_time = agreed([self.terminated, time.monotonic() >= self.deadline], args.device)
        # Decide on the agreed flags only: a SIGTERM that reaches this rank after the all-reduce is agreed at the next
        # step; stopping on it now would leave the other ranks waiting in that step's collective.
        if terminated or out_of_time:
            self.terminated = self.terminated or terminated
            self.out_of_time = self.out_of_time or out_of_time
            control.should_save = True
            control.should_training_stop = True


def agreed(flags: list[bool], device) -> list[bool]:
    """Each flag OR-ed over all ranks (itself when not distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flags
    t = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
