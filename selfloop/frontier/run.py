"""One frontier step for one family, in a child process the daemon starts.

``python -m selfloop.frontier.run --config CFG.json [--sandbox SANDBOX.json] --family SPEC --home DIR --rework DIR
--out RESULT.json``

With no champion yet it trains generation 0 (streamed generator labels of levels 1..labelled_max). Otherwise it is
one round: the champion labels the frontier (its kept labels land in ``REWORK/round-NNNN.jsonl`` with their
provenance), trains on the mixture of all rounds so far from the champion's weights and optimizer, and the paired
gate decides. A rejected round's labels stay on disk and join the next try's mixture. The family's label sources
are ``family_sources[name]`` or ``label_sources``; ``tool`` runs the model's programs in the configured sandbox.

Writes ``RESULT.json`` last; everything before it is atomic, so a child killed midway leaves the champion as it was.

Does not cover: scheduling steps or recording them (the daemon, ``selfloop.store.frontier``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selfloop.config import FrontierConfig, SandboxConfig
from selfloop.errors import ConfigError, SelfloopError
from selfloop.frontier import gate
from selfloop.frontier.curriculum import Frontier
from selfloop.frontier.families import load_family
from selfloop.frontier.family import Family, writes_programs
from selfloop.frontier.grow import Arm, Grower, daemon_arm, fixed_problems, outcomes
from selfloop.frontier.label import Label
from selfloop.frontier.tool import Runner, SandboxRunner
from selfloop.lifeline import ParentWatch
from selfloop.rework.writer import FRONTIER, write_records
from selfloop.sandbox import Sandbox

POINTER = "CHAMPION"
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Home:
    """A family's generations on disk: ``gen-NNNN/`` dirs and the ``CHAMPION`` pointer (replaced atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def champion(self) -> Path | None:
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        return path if (path / "frontier.json").is_file() else None

    def state(self, gen_dir: Path) -> dict[str, Any]:
        return json.loads((gen_dir / "frontier.json").read_text())

    def save(self, grower: Grower, generation: int, state: dict[str, Any], cfg: FrontierConfig) -> Path:
        """Write a generation whole (a temp dir renamed into place), never over an existing one."""
        import torch

        final = self.root / f"gen-{generation:04d}"
        tmp = self.root / f".gen-{generation:04d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        grower.model.save_pretrained(tmp)
        grower.tokenizer.save_pretrained(tmp)
        torch.save(grower.optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "selfloop_config.json").write_text(cfg.model_dump_json(indent=2))
        (tmp / "frontier.json").write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)  # a leftover of a step that died before promoting it
        os.replace(tmp, final)
        return final

    def promote(self, gen_dir: Path, keep: int) -> None:
        _atomic_write(self.root / POINTER, gen_dir.name + "\n")
        gens = sorted(p for p in self.root.glob("gen-*") if p.is_dir())
        for old in gens[:-keep]:
            if old != gen_dir:
                shutil.rmtree(old, ignore_errors=True)

    def next_generation(self) -> int:
        gens = [int(p.name[4:]) for p in self.root.glob("gen-*") if p.name[4:].isdigit()]
        return max(gens, default=-1) + 1


Rows = list[tuple[str, str]]
_TEXT = ("prompt", "completion", "program_prompt", "program")


def read_rounds(rework: Path, family: Family) -> list[tuple[Rows, Rows]]:
    """Every round's kept (answers, programs) so far, oldest first (a rejected round's too: it joins the next try).

    A row with a character the family's model cannot read (a hand-edited file) is left out, not fatal.
    """
    rounds = []
    alphabet = set(family.alphabet)
    for path in sorted(rework.glob("round-*.jsonl")):
        with path.open(encoding="utf-8") as f:
            rows = [r for r in map(json.loads, f) if r.get("prompt") and isinstance(r.get("completion"), str)]
        ok = [r for r in rows if set("".join(str(r.get(k) or "") for k in _TEXT)) <= alphabet]
        answers = [(r["prompt"], r["completion"]) for r in ok]
        programs = [(r["program_prompt"], r["program"]) for r in ok if r.get("program") and r.get("program_prompt")]
        rounds.append((answers, programs))
    return rounds


def write_round(rework: Path, number: int, kept: list[Label], generation: int, filters: dict[str, Any]) -> Path:
    """The round's kept labels as prompt/completion rows with their provenance (append-only, atomic)."""
    now = time.time()
    records = [
        {
            "id": f"{k.family}-r{number:04d}-{i:05d}",
            "prompt": k.prompt,
            "completion": k.answer,
            "family": k.family,
            "level": k.level,
            "round": number,
            "label_source": k.source,
            "audit_correct": k.audit_correct,
            "program_prompt": k.program_prompt or "",
            "program": k.program or "",
            "strategy": "frontier",
            "generation": generation,
            "created_at": now,
            "filters": filters,
        }
        for i, k in enumerate(kept)
    ]
    path = rework / f"round-{number:04d}.jsonl"
    write_records(path, records, kind=FRONTIER)
    return path


def gate_problems(family: Family, level: int, cfg: FrontierConfig) -> list:
    """The gate's problems of a level: their own seed, none of them a reported test problem."""
    test = set(fixed_problems(family, level, cfg.test_per_level, cfg.test_seed))
    rng = random.Random(f"gate/{cfg.gate_seed}/{family.name}/{level}")
    found: list = []
    for _ in range(20 * cfg.gate_per_level):
        if len(found) == cfg.gate_per_level:
            break
        p = family.sample(level, rng)
        if p not in test:
            found.append(p)
    return found


def accuracy(grower: Grower, family: Family, levels: list[int], cfg: FrontierConfig) -> dict[int, float]:
    solver = grower.solver()
    result = {}
    for lv in levels:
        hits = outcomes(solver, family, fixed_problems(family, lv, cfg.test_per_level, cfg.test_seed))
        result[lv] = round(sum(hits) / len(hits), 4)
    return result


def arm_of(cfg: FrontierConfig, family: Family) -> Arm:
    """The family's label sources (``family_sources`` over ``label_sources``); tool only where programs can be run."""
    sources = tuple(dict.fromkeys(cfg.family_sources.get(family.name, cfg.label_sources)))
    if "tool" in sources and not (writes_programs(family) and cfg.program_share > 0):
        # A family without programs still grows on its other sources; with none left that is a config error.
        sources = tuple(s for s in sources if s != "tool")
    if not sources:
        raise ConfigError(f"frontier family {family.name}: no label source it supports (tool needs programs)")
    return daemon_arm(cfg, sources)


Progress = Callable[[str, int, int], None]


def _progress_file(path: Path) -> Progress:
    """A progress hook that replaces ``path`` with ``{"what", "done", "total"}`` (the daemon polls it)."""

    def report(what: str, done: int, total: int) -> None:
        _atomic_write(path, json.dumps({"what": what, "done": done, "total": total}))

    return report


def generation0(cfg: FrontierConfig, family: Family, home: Home, progress: Progress | None = None) -> dict[str, Any]:
    grower = Grower(cfg, family, arm_of(cfg, family), cfg.seed)
    if progress:
        grower.progress = progress
    record = grower.generation0()
    levels = list(range(1, cfg.labelled_max + 2))
    state = {
        "generation": 0,
        "frontier": grower.frontier.to_dict(),
        "rounds": 0,
        "accuracy_by_level": accuracy(grower, family, levels, cfg),
    }
    home.promote(home.save(grower, 0, state, cfg), cfg.keep_generations)
    return {
        "kind": "gen0",
        "promoted": True,
        "reason": "generation 0: trained on the labelled range",
        **state,
        **record,
    }


def one_round(
    cfg: FrontierConfig,
    family: Family,
    home: Home,
    champion: Path,
    rework: Path,
    runner: Runner | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Label, train, gate; promote or keep the champion."""
    before = home.state(champion)
    grower = Grower(cfg, family, arm_of(cfg, family), cfg.seed, runner)
    if progress:
        grower.progress = progress
    _load(grower, champion)
    grower.frontier = Frontier(**before["frontier"])
    rounds = read_rounds(rework, family)
    for answers, programs in rounds:
        grower.mixture.add(answers)
        grower.programs.add(programs)
    # A step that died after writing its labels left a round file the champion's counter does not know yet.
    grower.rounds_done = max(before["rounds"], len(rounds))
    kept, record = grower.label_round()
    write_round(rework, grower.rounds_done, kept, before["generation"], _filters_of(grower))
    level = record["level"]
    gate_levels = list(range(1, level + 1))
    problems = {lv: gate_problems(family, lv, cfg) for lv in gate_levels}
    old = {lv: outcomes(grower.solver(), family, ps) for lv, ps in problems.items()}
    record = grower.train_round(kept, record)
    new = {lv: outcomes(grower.solver(), family, ps) for lv, ps in problems.items()}
    decision = gate.decide(old, new, level, mastery=cfg.mastery, margin=cfg.noninferiority_margin, alpha=cfg.alpha)
    result = {
        "kind": "round",
        **record,
        "promoted": decision.promote,
        "reason": decision.reason,
        "gate": decision.figures,
    }
    if not decision.promote:
        # The champion stays, with its curriculum; the round counter moves on so the next try is a new round file.
        state = {**before, "rounds": grower.rounds_done}
        _atomic_write(champion / "frontier.json", json.dumps(state, indent=2))
        return {**result, "generation": before["generation"], "frontier": before["frontier"]}
    generation = home.next_generation()
    levels = list(range(1, max(grower.frontier.level, level) + 2))
    state = {
        "generation": generation,
        "parent": before["generation"],
        "frontier": grower.frontier.to_dict(),
        "rounds": grower.rounds_done,
        "accuracy_by_level": accuracy(grower, family, levels, cfg),
        "labels": record.get("labels"),
    }
    home.promote(home.save(grower, generation, state, cfg), cfg.keep_generations)
    return {**result, **state}


def _filters_of(grower: Grower) -> dict[str, Any]:
    return {"sources": list(grower.arm.sources), **asdict(grower.arm.filters)}


def _load(grower: Grower, gen_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(gen_dir / "model.safetensors")
    vocab = grower.model.get_input_embeddings().weight.shape[0]
    if state["transformer.wte.weight"].shape[0] != vocab:
        raise SelfloopError(
            f"{gen_dir}: trained with another alphabet (an older selfloop, before programs); move"
            f" {gen_dir.parent} aside to grow this family again from generation 0"
        )
    missing, unexpected = grower.model.load_state_dict(state, strict=False)
    # save_pretrained drops the tied output matrix; anything else missing means another architecture.
    if unexpected or any(k != "lm_head.weight" for k in missing):
        raise SelfloopError(f"{gen_dir}: weights do not match the configured frontier model ({missing or unexpected})")
    grower.model.tie_weights()
    grower.optimizer.load_state_dict(torch.load(gen_dir / "optimizer.pt", weights_only=True))


def finished(state: dict[str, Any], cfg: FrontierConfig) -> bool:
    """The champion masters ``max_level``: a round there could not be better, so none runs."""
    accuracy = state.get("accuracy_by_level") or {}
    return state["frontier"]["level"] >= cfg.max_level and accuracy.get(str(cfg.max_level), 0.0) >= cfg.mastery


def step(
    cfg: FrontierConfig,
    spec: str,
    home_dir: Path,
    rework: Path,
    sandbox: SandboxConfig | None = None,
    progress: Path | None = None,
) -> dict[str, Any]:
    """One step for one family: generation 0 when there is no champion, else one round."""
    family = load_family(spec)
    if not NAME.match(family.name):
        raise SelfloopError(f"frontier family name {family.name!r} must be letters, digits, '_', '.', '-'")
    home = Home(home_dir)
    champion = home.champion()
    started = time.time()
    if champion is not None and finished(home.state(champion), cfg):
        return {"family": family.name, "kind": "done", "reason": f"level {cfg.max_level} (max_level) is mastered"}
    hook = _progress_file(progress) if progress else None
    if champion is None:
        result = generation0(cfg, family, home, hook)
    else:
        with ExitStack() as stack:
            runner = None
            if "tool" in arm_of(cfg, family).sources:
                runner = SandboxRunner(stack.enter_context(Sandbox(sandbox or SandboxConfig())))
            result = one_round(cfg, family, home, champion, rework, runner, hook)
    return {"family": family.name, "wall_seconds": round(time.time() - started, 1), **result}


def _watch(pid: int) -> None:
    """Exit at once when the daemon is gone: nothing is half-written, the next start redoes this step."""
    watch = ParentWatch(pid)

    def loop() -> None:
        while watch.alive():
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=loop, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfloop.frontier.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the resolved [frontier] section as JSON")
    p.add_argument("--sandbox", type=Path, default=None, help="the resolved [sandbox] section as JSON (tool labels)")
    p.add_argument("--family", required=True)
    p.add_argument("--progress", type=Path, default=None, help="a JSON file the step keeps replacing with its progress")
    p.add_argument("--home", type=Path, required=True, help="the family's generations")
    p.add_argument("--rework", type=Path, required=True, help="where the family's kept labels go")
    p.add_argument("--out", type=Path, required=True, help="the step's result (JSON)")
    p.add_argument("--watch-pid", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.watch_pid:
        _watch(args.watch_pid)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the daemon's log is no place for progress bars
    cfg = FrontierConfig.model_validate_json(args.config.read_text())
    sandbox = SandboxConfig.model_validate_json(args.sandbox.read_text()) if args.sandbox else None
    result = step(cfg, args.family, args.home, args.rework, sandbox, args.progress)
    _atomic_write(args.out, json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
