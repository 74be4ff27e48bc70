"""Benchmark: does the loop improve a model on verifiable tasks with no labels beyond the starter pack?

From a fresh project holding only the starter task pack (``corpus/orig/tasks``),
runs generation 0 and then N self-improvement cycles (solve -> judge in the
sandbox -> train -> evaluate -> gate -> promote -> curriculum) and prints, per
generation: held-out pass@1 per family and difficulty, the frontier (largest
difficulty at >= 0.9, direct answers), candidates accepted / rejected by reason,
held-out loss, the gate decision and wall time; then the "mental math vs tool"
table of the last champion: direct answers vs programs at each difficulty.

    python -m bench.selfimprove                 # the full run (about 30 minutes on 2 cores)
    python -m bench.selfimprove --quick         # CI smoke: tiny model, two generations, < 2 minutes
    python -m bench.selfimprove --control       # the same cycles with no rework data
    python -m bench.selfimprove --control --generations 0 --gen0-steps 1800   # steps-matched control

A benchmark, not a test: it asserts nothing and writes its figures to
``bench/results/selfimprove.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from selfloop.testing import make_project, tiny_config

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "corpus" / "orig" / "tasks"
RESULTS = ROOT / "bench" / "results"

FULL: dict[str, Any] = {
    "model": {"vocab_size": 400, "n_layer": 3, "n_head": 4, "n_embd": 96, "n_positions": 64, "keep_generations": 3},
    # A constant rate: a challenger continues its champion at the rate the champion ended on. With a
    # cosine schedule every challenger restarted at the peak rate and lost to its champion (BENCHMARKS.md).
    "train": {
        "gen0_steps": 1000,
        "max_steps": 200,
        "batch_size": 48,
        "block_size": 48,
        "learning_rate": 2e-3,
        "lr_scheduler": "constant_with_warmup",
        "warmup_ratio": 0.05,
        "save_steps": 500,
        "log_steps": 100,
        "eval_batches": 8,
        "eval_samples": 0,
        "rework_weight": 4.0,
        "rework_max_share": 0.6,
        "max_minutes": 12.0,
    },
    "rework": {
        "candidates_per_cycle": 1024,
        "rewrite_share": 0.0,
        "synthesize_share": 0.0,
        "solve_share": 1.0,
        "batch_size": 64,
    },
    "tasks": {
        "samples_per_task": 2,
        "max_difficulty": 6,
        "heldout_per_level": 16,
        "max_new_tokens": 24,
        "temperature": 0.8,
        "loss_max_difficulty": 4,
        "solve_window": 4,
    },
    "gate": {"loss_tolerance": 0.05, "task_tolerance": 0.05, "min_improvement": 0.01},
    "sandbox": {"pool_size": 2},
    "watch": {"enabled": False},
}
QUICK: dict[str, Any] = tiny_config(
    {
        "train": {
            "gen0_steps": 40,
            "max_steps": 10,
            "batch_size": 32,
            "block_size": 40,
            "save_steps": 20,
            "log_steps": 10,
            "eval_samples": 0,
            "eval_sample_tokens": 48,
        },
        "rework": {
            "enabled": True,
            "candidates_per_cycle": 32,
            "rewrite_share": 0.0,
            "synthesize_share": 0.0,
            "solve_share": 1.0,
            "batch_size": 32,
        },
        "tasks": {"samples_per_task": 2, "max_difficulty": 3, "heldout_per_level": 4, "max_new_tokens": 12},
        "gate": {"loss_tolerance": 0.05, "task_tolerance": 0.05, "min_improvement": 0.01},
        "sandbox": {"pool_size": 2},
        "watch": {"enabled": False},
    }
)


def generation_row(detail: dict[str, Any], store, cycle_id: int, seconds: float) -> dict[str, Any]:
    """One line of the report from a finished cycle."""
    from selfloop.train.suite import frontier

    phases = detail["phases"]
    ev, gate = phases["evaluate"]["out"], phases["gate"]["out"]
    gen = store.scalar("SELECT generation FROM cycles WHERE id = ?", (cycle_id,))
    challenger = ev["challenger"]
    counts = {
        r["reason"] or r["status"]: r["n"]
        for r in store.query(
            "SELECT status, reason, COUNT(*) AS n FROM candidates WHERE cycle_id = ? GROUP BY status, reason",
            (cycle_id,),
        )
    }
    accepted = store.scalar("SELECT COUNT(*) FROM candidates WHERE cycle_id = ? AND status = 'accepted'", (cycle_id,))
    rationalized = store.scalar(
        "SELECT COUNT(*) FROM candidates WHERE cycle_id = ? AND status = 'accepted' "
        "AND json_extract(meta, '$.rationalized')",
        (cycle_id,),
    )
    return {
        "generation": gen,
        "promoted": gate["promote"],
        "gate": gate["reason"],
        "loss": challenger.get("loss"),
        "tasks": challenger.get("tasks", {}),
        "detail": challenger.get("task_detail", {}),
        "frontier_answer": frontier(challenger.get("task_detail", {}), "answer"),
        "frontier_program": frontier(challenger.get("task_detail", {}), "program"),
        "candidates": counts,
        "accepted": accepted,
        "rationalized": rationalized,
        "curriculum": {s["family"]: s["new_level"] for s in phases["promote"]["out"].get("curriculum", [])},
        "train_steps": phases["train"]["out"]["global_step"],
        "rework_share": phases["train"]["out"]["data"]["rework_share"],
        "seconds": round(seconds, 1),
    }


def control(config: dict[str, Any]) -> dict[str, Any]:
    """The same config with no rework: every cycle trains the champion the same steps on the starter pack only.

    Tells self-improvement apart from "more steps on the same data".
    """
    return {**config, "rework": {**config["rework"], "candidates_per_cycle": 0}}


def run(generations: int, config: dict[str, Any], keep: Path | None, minutes: float, log=print) -> dict[str, Any]:
    from selfloop.loop.cycle import run_cycle
    from selfloop.sandbox import Sandbox
    from selfloop.store import Store

    work = Path(tempfile.mkdtemp(prefix="selfimprove-")) if keep is None else keep
    if keep is not None and keep.exists():
        shutil.rmtree(keep)
    # A fresh project: the starter task pack as its only data.
    config_path, cfg, paths = make_project(work, config, starter=PACK)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with Store.open(paths.db) as store, Sandbox(cfg.sandbox) as sandbox:
            for _ in range(generations + 1):
                if rows and time.monotonic() - started > minutes * 60:
                    log(f"stopping: the {minutes:g}-minute budget is spent")
                    break
                t0 = time.monotonic()
                detail = run_cycle(
                    cfg, paths, store, config_path=config_path, sandbox=sandbox, log=lambda m: log("  " + m)
                )
                cycle_id = store.scalar("SELECT MAX(id) FROM cycles")
                row = generation_row(detail, store, cycle_id, time.monotonic() - t0)
                rows.append(row)
                log(format_row(row))
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return {"config": config, "generations": rows, "wall_s": round(time.monotonic() - started, 1)}


def _pct(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "  - "


def format_row(row: dict[str, Any]) -> str:
    """One generation: figures per family and difficulty (answer/program), frontier, candidates, loss, time."""
    lines = [
        (
            f"gen {row['generation']}: {'PROMOTED' if row['promoted'] else 'rejected'} ({row['gate']}); "
            f"held-out loss {_pct(row['loss'])}; {row['seconds']:.0f} s; {row['train_steps']} steps, "
            f"rework share {row['rework_share']:.0%}"
        )
    ]
    for fam, diffs in sorted(row["detail"].items()):
        cells = " ".join(
            f"d{d}:{_pct(m.get('answer', {}).get('pass_at_1'))}/{_pct(m.get('program', {}).get('pass_at_1'))}"
            for d, m in diffs.items()
        )
        lines.append(f"  {fam:9s} pass@1 {_pct(row['tasks'].get(fam))}  answer/program by difficulty: {cells}")
    lines.append(
        f"  frontier (>= 0.9) answer {row['frontier_answer']} program {row['frontier_program']}; "
        f"curriculum {row['curriculum']}"
    )
    if row["candidates"]:
        lines.append(
            f"  candidates: {row['accepted']} accepted ({row['rationalized']} rationalized); "
            + ", ".join(f"{k} {v}" for k, v in sorted(row["candidates"].items()))
        )
    return "\n".join(lines)


def mental_vs_tool(row: dict[str, Any]) -> str:
    """The last champion's direct answers vs programs at each difficulty."""
    out = [
        "mental math vs tool (held-out pass@1, greedy):",
        f"{'family':9s} {'difficulty':>10s} {'answer':>7s} {'program':>8s}",
    ]
    for fam, diffs in sorted(row["detail"].items()):
        for d, m in diffs.items():
            out.append(
                f"{fam:9s} {d:>10s} {_pct(m.get('answer', {}).get('pass_at_1')):>7s} "
                f"{_pct(m.get('program', {}).get('pass_at_1')):>8s}"
            )
    return "\n".join(out)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.selfimprove", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--generations",
        type=int,
        default=None,
        help="self-improvement cycles after generation 0 (default: as many as --minutes allows; quick 1)",
    )
    p.add_argument("--quick", action="store_true", help="CI smoke: tiny model, few steps, small suite (< 2 minutes)")
    p.add_argument("--minutes", type=float, default=30.0, help="no new cycle starts after this wall budget")
    p.add_argument(
        "--control", action="store_true", help="control run: no rework data, the same training steps per cycle"
    )
    p.add_argument(
        "--gen0-steps",
        type=int,
        default=None,
        help="generation 0's training steps (a steps-matched control: --control --generations 0 --gen0-steps N)",
    )
    p.add_argument("--keep", type=Path, default=None, help="run in this project dir and keep it (default: a temp dir)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/selfimprove.json")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the training child is stopped too instead of left running.
    signal.signal(signal.SIGTERM, _interrupt)
    generations = args.generations if args.generations is not None else (1 if args.quick else 100)
    config = QUICK if args.quick else FULL
    if args.gen0_steps is not None:
        config = {**config, "train": {**config["train"], "gen0_steps": args.gen0_steps}}
    result = run(generations, control(config) if args.control else config, args.keep, args.minutes)
    result.update(quick=args.quick, control=args.control)
    champions = [r for r in result["generations"] if r["promoted"]]
    if champions:
        print(mental_vs_tool(champions[-1]))
    promoted = [r["generation"] for r in champions]
    print(f"promoted generations: {promoted}; wall time {result['wall_s']:.0f} s")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = (
            "selfimprove"
            + ("-quick" if args.quick else "")
            + ("-control" if args.control else "")
            + (f"-gen0-{args.gen0_steps}" if args.gen0_steps is not None else "")
            + ".json"
        )
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
