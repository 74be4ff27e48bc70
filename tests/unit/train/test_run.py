"""The training child: launcher argv, a real run, metrics, and resuming after SIGTERM or kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lifecycle_helpers import prepared_run

from selfloop.config import REPORT_TO, LauncherConfig
from selfloop.store import Store
from selfloop.train.launch import TrainingInterrupted, build_argv, child_args, launch_training
from selfloop.train.rundir import RunDir, RunValues, last_complete_checkpoint


def test_launcher_argv():
    args = ["--steps", "5"]
    assert build_argv(LauncherConfig(), args, python="py") == ["py", "-m", "selfloop.train", "--steps", "5"]
    torchrun = build_argv(
        LauncherConfig(kind="torchrun", nproc_per_node=4, nnodes=2, rdzv_endpoint="h:29500"), args, python="py"
    )
    assert torchrun == [
        "py",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=4",
        "--nnodes=2",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=h:29500",
        "-m",
        "selfloop.train",
        "--steps",
        "5",
    ]
    acc = build_argv(
        LauncherConfig(kind="accelerate", nproc_per_node=2, extra_args=["--mixed_precision=bf16"]), args, python="py"
    )
    assert acc == [
        "py",
        "-m",
        "accelerate.commands.launch",
        "--num_processes=2",
        "--num_machines=1",
        "--multi_gpu",
        "--main_process_port=0",
        "--mixed_precision=bf16",
        "-m",
        "selfloop.train",
        "--steps",
        "5",
    ]


def test_torn_checkpoints_are_skipped(tmp_path):
    for step, whole in ((4, True), (8, True), (12, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if whole:
            (d / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert not (tmp_path / "checkpoint-12").exists()
    assert last_complete_checkpoint(tmp_path / "none") is None


@pytest.fixture
def run_setup(tmp_path):
    return prepared_run(tmp_path, {"train": {"save_steps": 4, "log_steps": 1}})


def start_child(cfg, paths, run_dir, steps):
    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=steps))
    argv = build_argv(cfg.train.launcher, child_args(run_dir))
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"child ended early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def logged_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_next_launch_resumes(run_setup):
    config_path, cfg, paths, run_dir = run_setup
    steps = 160

    # The parent's stop request (the daemon stopping) reaches the child as SIGTERM.
    def saved_one() -> bool:  # any whole checkpoint (older ones rotate away)
        return any((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))

    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=steps))
    with pytest.raises(TrainingInterrupted, match="interrupted"):
        launch_training(run_dir, should_stop=saved_one)
    first = json.loads((run_dir / "result.json").read_text())
    stopped = first["global_step"]
    assert first["status"] == "interrupted" and 4 <= stopped < steps
    assert not (run_dir / "final").exists()
    assert (run_dir / "checkpoints" / f"checkpoint-{stopped}" / "trainer_state.json").is_file()

    result = launch_training(run_dir)
    assert result["status"] == "done" and result["global_step"] == steps
    assert result["resumed_from"].endswith(f"checkpoint-{stopped}")  # not from zero
    logged = logged_steps(run_dir)
    resumed_part = logged[logged.index(stopped) + 1 :]
    assert resumed_part and resumed_part[0] == stopped + 1 and resumed_part[-1] == steps
    assert (run_dir / "final" / "model.safetensors").is_file()
    with Store.open(paths.db, readonly=True) as store:
        rows = store.query("SELECT step, loss, lr, tokens_per_s FROM train_metrics WHERE generation = 0 ORDER BY id")
    assert [r["step"] for r in rows] == logged
    assert all(r["loss"] > 0 and r["lr"] >= 0 for r in rows)
    assert any(r["tokens_per_s"] and r["tokens_per_s"] > 0 for r in rows)


@pytest.mark.slow
def test_kill_9_resumes_from_the_last_save_steps_checkpoint(run_setup):
    config_path, cfg, paths, run_dir = run_setup
    steps = 160
    proc = start_child(cfg, paths, run_dir, steps)
    wait_for(run_dir / "checkpoints" / "checkpoint-8" / "trainer_state.json", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    last = last_complete_checkpoint(run_dir / "checkpoints")
    saved = int(last.rsplit("-", 1)[1])
    assert saved >= 8 and saved % 4 == 0
    result = launch_training(run_dir)
    assert result["resumed_from"] == last and result["global_step"] == steps
    # The tokenizer trained before the kill is reused, so the checkpoint's vocabulary still fits.
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()


def test_report_to_knows_the_trainers_integrations():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert REPORT_TO == set(INTEGRATION_TO_CALLBACK)  # a new transformers integration is accepted by the config too
