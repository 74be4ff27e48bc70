"""Scale-out launchers: the argv per launcher kind, their config checks, and killing a launcher's whole tree."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest
from lifecycle_helpers import make_project, prepared_run

from selfloop.config import LauncherConfig
from selfloop.errors import ConfigError, SelfloopError
from selfloop.train.launch import build_argv, kill_active_children, launch_training
from selfloop.train.rundir import RunDir, RunValues

CHILD = ["--steps", "5"]


def test_torchrun_on_one_node_is_standalone_and_on_many_uses_c10d():
    one = build_argv(LauncherConfig(kind="torchrun", nproc_per_node=2), CHILD, python="py")
    assert one == [
        "py",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--standalone",
        "-m",
        "selfloop.train",
        "--steps",
        "5",
    ]
    many = build_argv(
        LauncherConfig(kind="torchrun", nproc_per_node=8, nnodes=4, node_rank=2, rdzv_endpoint="n0:29400"),
        CHILD,
        python="py",
    )
    # The same command on every node: c10d assigns the node ranks.
    assert many == [
        "py",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=8",
        "--nnodes=4",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=n0:29400",
        "-m",
        "selfloop.train",
        "--steps",
        "5",
    ]


def test_accelerate_gets_its_multi_process_path_unless_extra_args_choose_one():
    two = build_argv(LauncherConfig(kind="accelerate", nproc_per_node=2), CHILD, python="py")
    assert two == [
        "py",
        "-m",
        "accelerate.commands.launch",
        "--num_processes=2",
        "--num_machines=1",
        "--multi_gpu",
        "--main_process_port=0",
        "-m",
        "selfloop.train",
        "--steps",
        "5",
    ]
    one = build_argv(LauncherConfig(kind="accelerate"), CHILD, python="py")
    assert "--multi_gpu" not in one and "--main_process_port=0" not in one
    fsdp = build_argv(
        LauncherConfig(kind="accelerate", nproc_per_node=4, extra_args=["--use_fsdp"]), CHILD, python="py"
    )
    assert "--multi_gpu" not in fsdp and "--use_fsdp" in fsdp
    own = build_argv(
        LauncherConfig(kind="accelerate", nproc_per_node=4, extra_args=["--config_file=acc.yaml"]), CHILD, python="py"
    )
    assert "--multi_gpu" not in own
    nodes = build_argv(
        LauncherConfig(kind="accelerate", nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="n0:29500"),
        CHILD,
        python="py",
    )
    assert nodes[3:9] == [
        "--num_processes=16",
        "--num_machines=2",
        "--multi_gpu",
        "--main_process_ip=n0",
        "--main_process_port=29500",
        "--machine_rank=1",
    ]


@pytest.mark.parametrize(
    ("launcher", "message"),
    [
        ({"kind": "torchrun", "nnodes": 2}, "needs rdzv_endpoint"),
        ({"kind": "torchrun", "nnodes": 2, "rdzv_endpoint": "n0"}, "must be host:port"),
        (
            {"kind": "accelerate", "nnodes": 2, "node_rank": 2, "rdzv_endpoint": "n0:1"},
            "node_rank (2) must be below nnodes (2)",
        ),
        ({"kind": "mpirun"}, "train.launcher.kind"),
    ],
)
def test_bad_launcher_config_names_the_key(tmp_path, launcher, message):
    with pytest.raises(ConfigError) as e:
        make_project(tmp_path, {"train": {"launcher": launcher}})
    assert "train.launcher" in str(e.value) and message in str(e.value)


def training_processes(parent: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in parent.children(recursive=True):
        try:
            if "selfloop.train" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:  # gone or a zombie meanwhile
            pass
    return found


@pytest.mark.slow
def test_kill_active_children_takes_the_workers_down_with_the_launcher(tmp_path):
    config_path, cfg, paths, run_dir = prepared_run(
        tmp_path, {"train": {"launcher": {"kind": "torchrun", "nproc_per_node": 2}}}
    )
    outcome: dict[str, BaseException] = {}
    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=10_000))

    def train() -> None:
        try:
            launch_training(run_dir)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=train)
    thread.start()
    me = psutil.Process()
    deadline = time.monotonic() + 60
    # torchrun's workers run in sessions of their own: wait until both exist.
    while len(workers := training_processes(me)) < 3:
        assert time.monotonic() < deadline and thread.is_alive(), "torchrun never started its two workers"
        time.sleep(0.1)
    assert kill_active_children() >= 3
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), SelfloopError)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []
    assert kill_active_children() == 0  # nothing is registered any more


def test_the_training_child_keeps_its_buffers_in_the_heap_unless_the_user_says_otherwise(monkeypatch):
    from selfloop.train.launch import CHILD_MALLOC, child_env

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    env = child_env()
    assert env["MALLOC_MMAP_THRESHOLD_"] == CHILD_MALLOC["MALLOC_MMAP_THRESHOLD_"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"  # the environment wins
    assert env["PATH"] == os.environ["PATH"]  # everything else is inherited
