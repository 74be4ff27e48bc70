"""Experiment: does a model that labels its own frontier beat a compute-matched control?

Per seed, one generation 0 learns levels 1..labelled_max from streamed generator labels; every arm starts from it
and runs the same rounds (steps, schedule, replay, seeds) and differs only in who fills the newest slot of the
mixture: ``self`` (the model, kept by its own checks), ``tool`` (the stdout of programs the model wrote, run in the
sandbox, kept by key-free checks), ``unfiltered`` (the model, format only), ``oracle`` (the answer key: the upper
bound) or ``control`` (nobody: fresh labelled-range problems). Each arm's final model is tested on problems from a
seed no round draws from. The criteria below are fixed before the run.

    python -m bench.selfimprove                                   # 3 seeds x 4 arms, about an hour on 2 cores
    python -m bench.selfimprove --family reverse --seeds 1 --arms self,control
    python -m bench.selfimprove --arms tool,control --rounds 6 --sandbox bwrap
    python -m bench.selfimprove --quick                           # smoke: tiny sizes, about a minute

A benchmark, not a test: it asserts nothing; it writes ``bench/results/selfimprove.json`` (or ``--json``) and a PNG
of accuracy by length per round and arm.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import RESULTS, Recorder, say

# Written before the run; the verdict only reads them.
CRITERIA: dict[str, Any] = {
    "final_margin": 0.5,
    "in_distribution_margin": 0.02,
    "rule": (
        "for self and for tool (each that runs): in every seed, accuracy(arm) - accuracy(control) >= final_margin "
        "at the final level, and in-distribution accuracy (levels 1..labelled_max) of the arm >= control - "
        "in_distribution_margin; each arm's final model, test problems from test_seed"
    ),
}
ARMS = ("self", "tool", "unfiltered", "oracle", "control")
JUDGED = ("self", "tool")  # the arms the criteria are about: no answer key selects their labels
QUICK: dict[str, Any] = {
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "gen0_steps": 150,
    "round_steps": 20,
    "candidates_chunk": 64,
    "candidates_max": 128,
    "min_kept": 16,
    "test_per_level": 40,
}


def _threads() -> None:
    # One thread per worker: two OpenMP teams on two shared cores spin against each other (~10x slower).
    import torch

    torch.set_num_threads(1)


def _grower(cfg_raw: dict[str, Any], family_spec: str, arm_name: str, seed: int, runner=None):
    from selfloop.config import FrontierConfig
    from selfloop.frontier.families import load_family
    from selfloop.frontier.grow import Grower, arms

    cfg = FrontierConfig(**cfg_raw)
    family = load_family(family_spec)
    return Grower(cfg, family, arms(cfg)[arm_name], seed, runner)


def _evaluate(grower, levels: list[int], n: int, test_seed: int) -> dict[int, list[bool]]:
    from selfloop.frontier.grow import fixed_problems, outcomes

    solver = grower.solver()
    return {lv: outcomes(solver, grower.family, fixed_problems(grower.family, lv, n, test_seed)) for lv in levels}


def _accuracy(results: dict[int, list[bool]]) -> dict[int, float]:
    return {lv: round(sum(r) / len(r), 4) for lv, r in results.items()}


def run_gen0(cfg_raw: dict[str, Any], family_spec: str, seed: int, levels: list[int], out: str) -> dict[str, Any]:
    """Train one generation 0 and save it (weights and optimizer) for the arms."""
    _threads()
    grower = _grower(cfg_raw, family_spec, "control", seed)
    record = grower.generation0()
    grower.save(Path(out))
    record["accuracy_by_length"] = _accuracy(_evaluate(grower, levels, cfg_raw["test_per_level"], cfg_raw["test_seed"]))
    say(f"seed {seed}: generation 0 in {record['seconds']:.0f} s: {record['accuracy_by_length']}")
    return record


def run_arm(
    cfg_raw: dict[str, Any],
    family_spec: str,
    seed: int,
    arm: str,
    gen0: str,
    rounds: int,
    levels: list[int],
    sandbox: str,
) -> dict[str, Any]:
    """Every round of one arm from the seed's generation 0; accuracy by length after each round."""
    from contextlib import ExitStack

    from selfloop.config import SandboxConfig
    from selfloop.frontier.tool import SandboxRunner
    from selfloop.sandbox import Sandbox

    _threads()
    started = time.time()
    with ExitStack() as stack:
        runner = None
        if arm == "tool":  # one sandbox worker: the arm's process already has its core
            box = stack.enter_context(Sandbox(SandboxConfig(backend=sandbox, pool_size=1)))
            runner = SandboxRunner(box)
        return _rounds(cfg_raw, family_spec, seed, arm, gen0, rounds, levels, runner, started)


def _rounds(cfg_raw, family_spec, seed, arm, gen0, rounds, levels, runner, started) -> dict[str, Any]:
    grower = _grower(cfg_raw, family_spec, arm, seed, runner)
    grower.load(Path(gen0))
    records, final = [], {}
    for _ in range(rounds):
        record = grower.round()
        final = _evaluate(grower, levels, cfg_raw["test_per_level"], cfg_raw["test_seed"])
        record["accuracy_by_length"] = _accuracy(final)
        records.append(record)
        labels = record.get("labels") or {}
        say(
            f"seed {seed} {arm} round {record['round']} level {record['level']}: "
            f"yield {labels.get('yield', '-')} audited {labels.get('audited_label_accuracy', '-')} "
            f"acc {record['accuracy_by_length']} ({record['seconds']:.0f} s)"
        )
    # Per-question outcomes of the final model travel as 0/1 strings so arms can be paired question by question.
    return {
        "seed": seed,
        "arm": arm,
        "rounds": records,
        "outcomes": {lv: "".join("1" if x else "0" for x in r) for lv, r in final.items()},
        "seconds": round(time.time() - started, 1),
    }


def verdict(result: dict[str, Any], final_level: int, labelled_max: int) -> dict[str, Any]:
    """Paired per-seed differences of every arm against the control, judged by ``CRITERIA``."""
    from selfloop.frontier.stats import mean_interval, paired

    def bits(arm: str, seed: int, levels: list[int]) -> list[bool]:
        runs = {s["seed"]: s for s in result["arms"][arm]["seeds"]}
        outcomes = {int(k): v for k, v in runs[seed]["outcomes"].items()}  # int keys in memory, str from JSON
        return [c == "1" for lv in levels for c in outcomes[lv]]

    if "control" not in result["arms"]:
        return {"passed": None, "why": "no control arm: nothing to compare against"}
    seeds = [s["seed"] for s in result["arms"]["control"]["seeds"]]
    inside = list(range(1, labelled_max + 1))
    out: dict[str, Any] = {"criteria": CRITERIA, "final_level": final_level, "by_arm": {}}
    for arm in result["arms"]:
        if arm == "control":
            continue
        per_seed = []
        for seed in seeds:
            final = paired(bits("control", seed, [final_level]), bits(arm, seed, [final_level]))
            within = paired(bits("control", seed, inside), bits(arm, seed, inside))
            per_seed.append({"seed": seed, "final": final.to_dict(), "in_distribution": within.to_dict()})
        ok = all(
            p["final"]["diff"] >= CRITERIA["final_margin"]
            and p["in_distribution"]["diff"] >= -CRITERIA["in_distribution_margin"]
            for p in per_seed
        )
        out["by_arm"][arm] = {
            "per_seed": per_seed,
            "final_diff_over_seeds": mean_interval([p["final"]["diff"] for p in per_seed]),
            "meets_criteria": ok,
        }
    judged = [out["by_arm"][a]["meets_criteria"] for a in JUDGED if a in out["by_arm"]]
    out["passed"] = all(judged) if judged else None
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy against length after each round, one panel per arm (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["arms"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], names):
        seeds = result["arms"][arm]["seeds"]
        gen0 = result["gen0"]
        rounds = len(seeds[0]["rounds"])
        cmap = plt.get_cmap("viridis")
        levels = sorted(int(lv) for lv in gen0[0]["accuracy_by_length"])
        mean0 = [sum(g["accuracy_by_length"][lv] for g in gen0) / len(gen0) for lv in levels]
        ax.plot(levels, mean0, color="grey", linestyle="--", label="gen 0")
        for r in range(rounds):
            ys = [sum(s["rounds"][r]["accuracy_by_length"][lv] for s in seeds) / len(seeds) for lv in levels]
            ax.plot(levels, ys, color=cmap(r / max(1, rounds - 1)), label=f"round {r + 1}")
        ax.set_title(arm)
        ax.set_xlabel("operand length (level)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (mean over seeds)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{result['family']}: accuracy by length after each round")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.selfimprove", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="addition", help='a built-in family or a plugin "module:object"')
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (one generation 0 each)")
    p.add_argument("--rounds", type=int, default=8, help="rounds per arm")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of: {', '.join(ARMS)}")
    p.add_argument("--final-level", type=int, default=None, help="the level the verdict reads (labelled_max + 3)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--json", type=Path, default=None, help="where the figures go (bench/results/selfimprove.json)")
    p.add_argument("--png", type=Path, default=None, help="the plot (next to the JSON, .png)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the mechanics run, the numbers mean little")
    p.add_argument("--sandbox", default="auto", help="the tool arm's sandbox backend: auto, docker, bwrap, process")
    p.add_argument("--program-share", type=float, default=None, help="share of batches teaching programs (0.2)")
    args = p.parse_args(argv)
    unknown = set(args.arms.split(",")) - set(ARMS)
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}")
    from selfloop.errors import ConfigError
    from selfloop.frontier.families import load_family

    try:
        load_family(args.family)  # a family that does not load fails here, not in every worker
    except ConfigError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    from selfloop.config import FrontierConfig

    args = parse(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    arm_names = args.arms.split(",")
    if args.quick:
        seeds, args.rounds = seeds[:1], min(args.rounds, 2)
    sizes = {**(QUICK if args.quick else {})}
    if args.program_share is not None:
        sizes["program_share"] = args.program_share
    base = FrontierConfig(**sizes)
    final_level = args.final_level or base.labelled_max + 3
    cfg_raw = base.model_copy(update={"max_level": final_level}).model_dump()
    levels = list(range(1, final_level + 2))
    rec = Recorder("selfimprove", args.quick, "python -m bench.selfimprove " + " ".join(argv or sys.argv[1:]))
    result: dict[str, Any] = {
        "family": args.family,
        "criteria": CRITERIA,
        "config": cfg_raw,
        "seeds": seeds,
        "rounds": args.rounds,
        "final_level": final_level,
        "levels": levels,
    }
    say(f"selfimprove: {args.family}, seeds {seeds}, arms {arm_names}, {args.rounds} rounds, {args.jobs} jobs")
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="selfimprove-") as tmp, ProcessPoolExecutor(args.jobs, context) as pool:
        gen0: dict[int, Future] = {
            s: pool.submit(run_gen0, cfg_raw, args.family, s, levels, f"{tmp}/gen0-{s}.pt") for s in seeds
        }
        runs: list[Future] = []
        for s in seeds:
            gen0[s].result()
            runs += [
                pool.submit(
                    run_arm, cfg_raw, args.family, s, a, f"{tmp}/gen0-{s}.pt", args.rounds, levels, args.sandbox
                )
                for a in arm_names
            ]
        result["gen0"] = [{"seed": s, **gen0[s].result()} for s in seeds]
        done = [r.result() for r in runs]
    result["arms"] = {}
    for arm in arm_names:
        seeds_of = []
        for run in (d for d in done if d["arm"] == arm):
            last = run["rounds"][-1]["accuracy_by_length"]
            inside = [last[lv] for lv in range(1, base.labelled_max + 1)]
            seeds_of.append(
                {
                    **run,
                    "final_accuracy": last[final_level],
                    "in_distribution_accuracy": round(sum(inside) / len(inside), 4),
                    "accuracy_by_length": last,
                }
            )
        result["arms"][arm] = {"seeds": seeds_of}
    result["verdict"] = verdict(result, final_level, base.labelled_max)
    path = write(rec, result, args.json or RESULTS / "selfimprove.json")
    png = args.png or path.with_suffix(".png")
    plot(result, png)
    _summary(result, final_level)
    say(f"figures: {path}\nplot: {png}")
    return 0


def write(rec: Recorder, result: dict[str, Any], path: Path) -> Path:
    """The figures at the top level of the JSON (criteria, arms, verdict, ...) beside the run's context."""
    rec.figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        context = json.loads(rec.write(Path(tmp)).read_text())
    context.pop("figures")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**context, **result}, indent=1, default=str) + "\n")
    return path


def _summary(result: dict[str, Any], final_level: int) -> None:
    say(f"\nfinal level {final_level}: accuracy of each arm's final model, per seed")
    for arm, data in result["arms"].items():
        figures = ", ".join(f"seed {s['seed']}: {s['final_accuracy']:.3f}" for s in data["seeds"])
        say(f"  {arm:<10} {figures}")
    v = result["verdict"]
    for arm, data in v.get("by_arm", {}).items():
        d = data["final_diff_over_seeds"]
        say(
            f"  {arm} - control at {final_level}: mean {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] "
            f"over {d['n']} seeds; meets criteria: {data['meets_criteria']}"
        )
    say(f"verdict (self, tool): {'PASS' if v.get('passed') else 'FAIL' if v.get('passed') is False else 'n/a'}")


if __name__ == "__main__":
    raise SystemExit(main())
