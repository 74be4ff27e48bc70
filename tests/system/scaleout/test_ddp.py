"""DDP on CPU (gloo): two processes with the same global batch train exactly like one.

One process at batch 8 is the reference. Two processes at batch 4 each, under
torchrun (stopped by SIGTERM mid-run and resumed) and under accelerate, must log
the same loss at every step and end with the same weights. The global batches
are identical by construction: accelerate's seedable sampler draws one
permutation per epoch from ``data_seed`` whatever the process count, rank r
takes the r-th half of each global batch, ragged epoch ends are dropped
(``dataloader_drop_last``), and the loss is averaged over all ranks' tokens
(``average_tokens_across_devices``). What remains is float32 summation order in
the gradient all-reduce: measured at most 5e-7 on these losses (about 5), so
1e-4 is the stated tolerance.

Also checks that only rank 0 writes: one metrics line and one store row per
step, one result, the same run-dir layout as a single process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lifecycle_helpers import fill_corpus, make_project
from safetensors.torch import load_file

from selfloop.store import Store
from selfloop.store.corpus import load_documents
from selfloop.train.data import write_snapshot
from selfloop.train.launch import TrainingInterrupted, launch_training
from selfloop.train.rundir import RunDir, RunValues

pytestmark = pytest.mark.slow

STEPS = 40  # about three epochs of the 117-example corpus at a global batch of 8: two ragged ends
TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-3  # a third of one Adam step at the test's learning rate
GLOBAL_BATCH = 8


def project(root: Path, launcher: dict, batch_size: int, source: Path | None = None):
    config_path, cfg, paths = make_project(
        root,
        {
            "train": {
                "batch_size": batch_size,
                "log_steps": 1,
                "save_steps": 4,
                "launcher": launcher,
            }
        },
    )
    run_dir = paths.runs / "gen-0000"
    run_dir.mkdir(parents=True)
    if source is None:
        with Store.open(paths.db) as store:
            fill_corpus(store)
            write_snapshot(run_dir / "data.jsonl", load_documents(store, split="train", origin="orig"))
    else:
        # Same snapshot and the same trained tokenizer (the child reuses one it finds).
        shutil.copy(source / "data.jsonl", run_dir / "data.jsonl")
        shutil.copytree(source / "tokenizer", run_dir / "tokenizer")
    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=STEPS))
    return config_path, cfg, paths, run_dir


def curve(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [row["step"] for row in lines]
    assert len(steps) == len(set(steps)), "a step was logged twice: a rank other than 0 wrote metrics"
    return {row["step"]: row["loss"] for row in lines}


def assert_same_training(run_dir: Path, reference: Path) -> None:
    ours, ref = curve(run_dir), curve(reference)
    assert sorted(ours) == list(range(1, STEPS + 1)) == sorted(ref)
    worst = max(abs(ours[s] - ref[s]) for s in ref)
    assert worst <= TOLERANCE, f"loss curves differ by {worst}"
    a, b = load_file(run_dir / "final" / "model.safetensors"), load_file(reference / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    # Adam divides by the gradient's running scale, so a 1e-7 gradient difference on a
    # weight with a near-zero gradient can move it by a visible share of one step (lr 3e-3).
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= WEIGHT_TOLERANCE, f"final weights differ by {worst}"


def assert_only_rank_0_wrote(paths, run_dir: Path, reference: Path) -> None:
    result = json.loads((run_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["status"] == "done" and result["global_step"] == STEPS
    assert {p.name for p in run_dir.iterdir()} == {p.name for p in reference.iterdir()}
    with Store.open(paths.db, readonly=True) as store:
        steps = [r["step"] for r in store.query("SELECT step FROM train_metrics WHERE generation = 0 ORDER BY id")]
    assert steps == list(range(1, STEPS + 1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    config_path, cfg, _, run_dir = project(tmp_path_factory.mktemp("one"), {"kind": "python"}, GLOBAL_BATCH)
    result = launch_training(run_dir)
    assert result["world_size"] == 1 and result["global_step"] == STEPS
    return run_dir


def test_torchrun_two_processes_interrupted_and_resumed_match_one_process(tmp_path, reference):
    config_path, cfg, paths, run_dir = project(
        tmp_path, {"kind": "torchrun", "nproc_per_node": 2}, GLOBAL_BATCH // 2, reference
    )

    def logged_a_few() -> bool:
        metrics = run_dir / "metrics.jsonl"
        return metrics.is_file() and len(metrics.read_text().splitlines()) >= 3

    # SIGTERM reaches torchrun, which passes it on; both ranks must agree on the step
    # to stop at, or one would wait forever in the next all-reduce.
    with pytest.raises(TrainingInterrupted):
        launch_training(run_dir, should_stop=logged_a_few)
    stopped = json.loads((run_dir / "result.json").read_text())
    assert stopped["status"] == "interrupted" and 3 <= stopped["global_step"] < STEPS, stopped
    resumed = launch_training(run_dir)
    assert resumed["resumed_from"].endswith(f"checkpoint-{stopped['global_step']}")
    assert resumed["tokens"] == json.loads((reference / "result.json").read_text())["tokens"]
    assert_same_training(run_dir, reference)
    assert_only_rank_0_wrote(paths, run_dir, reference)


def test_accelerate_two_processes_match_one_process(tmp_path, reference):
    config_path, cfg, paths, run_dir = project(
        tmp_path, {"kind": "accelerate", "nproc_per_node": 2}, GLOBAL_BATCH // 2, reference
    )
    result = launch_training(run_dir)
    assert result["examples"] == json.loads((reference / "result.json").read_text())["examples"]
    assert_same_training(run_dir, reference)
    assert_only_rank_0_wrote(paths, run_dir, reference)
