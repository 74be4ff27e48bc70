"""One arm of frontier growth: generation 0 on the labelled range, then rounds that label the frontier, train on
the mixture and move the curriculum.

An arm differs from another only in who fills the newest slot of the mixture: ``self`` (the model, filtered by its
own checks), ``tool`` (programs the model wrote, run in the sandbox, kept by key-free checks), ``unfiltered`` (the
model, format only), ``oracle`` (the answer key), ``control`` (nobody: fresh problems from the labelled range).
Steps, schedule, replay and seeds are the same. With ``program_share`` > 0 the model also learns to write programs
(generation 0 from reference programs of the labelled range, rounds from kept ``tool`` programs), in every arm.

Does not cover: storing generations (the daemon) or comparing arms (``bench.selfimprove``).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfloop.config import FrontierConfig
from selfloop.frontier import curriculum, engine
from selfloop.frontier.family import Family, writes_programs
from selfloop.frontier.label import Label, LabelStats, SelfFilters, Source, label
from selfloop.frontier.mixture import Mixture
from selfloop.frontier.tool import Runner


@dataclass(frozen=True)
class Arm:
    name: str
    sources: tuple[Source, ...]  # who may select labels, tried in order; () for the control, which labels nothing
    filters: SelfFilters


def self_filters(cfg: FrontierConfig) -> SelfFilters:
    return SelfFilters(cfg.checks, cfg.samples, cfg.vote_threshold, cfg.temperature, cfg.agree_previous)


def arms(cfg: FrontierConfig) -> dict[str, Arm]:
    """The experiment's arms, with the self filters ``cfg`` configures."""
    off = SelfFilters(checks=False, samples=0, agree_previous=False)
    return {
        "self": Arm("self", ("self",), self_filters(cfg)),
        "tool": Arm("tool", ("tool",), off),
        "unfiltered": Arm("unfiltered", ("self",), off),
        "oracle": Arm("oracle", ("oracle",), off),
        "control": Arm("control", (), off),
    }


def daemon_arm(cfg: FrontierConfig, sources: tuple[Source, ...]) -> Arm:
    """What the daemon runs: the configured sources of one family, with the configured self filters."""
    return Arm("+".join(sources), sources, self_filters(cfg))


def fixed_problems(family: Family, level: int, n: int, seed: int) -> list:
    """The fixed test problems of a level: their own seed, never drawn by generation 0 or a round."""
    rng = random.Random(f"{seed}/{family.name}/{level}")
    return [family.sample(level, rng) for _ in range(n)]


def outcomes(solver: engine.ModelSolver, family: Family, problems: list) -> list[bool]:
    """Per problem: is the greedy answer exactly the right one."""
    answers = solver.greedy([family.prompt(p) for p in problems])
    return [family.parse(p, a) == family.solve(p) for p, a in zip(problems, answers)]


class Grower:
    """A model, its optimizer, its mixture and its frontier, for one family and one arm."""

    def __init__(self, cfg: FrontierConfig, family: Family, arm: Arm, seed: int, runner: Runner | None = None) -> None:
        self.cfg, self.family, self.arm, self.seed, self.runner = cfg, family, arm, seed, runner
        self.program_share = cfg.program_share if writes_programs(family) else 0.0
        if "tool" in arm.sources and not self.program_share:
            raise ValueError(
                f"the tool source needs program_share > 0 and a family that writes programs ({family.name})"
            )
        torch.manual_seed(seed)
        self.tokenizer = engine.build_tokenizer(family.alphabet)
        self.model = engine.build_model(cfg, self.tokenizer)
        self.optimizer = engine.make_optimizer(self.model, cfg.gen0_lr)
        self.mixture = Mixture(family, cfg.labelled_max, new_share=cfg.new_share, min_kept=cfg.min_kept)
        self.programs = Mixture(family, cfg.labelled_max, new_share=cfg.new_share, min_kept=cfg.min_kept, program=True)
        self.frontier = curriculum.Frontier(cfg.labelled_max + 1)
        self.rounds_done = 0
        self.previous: engine.ModelSolver | None = None  # the generation before this one (agree_previous)
        self.progress: Callable[[str, int, int], None] = lambda what, done, total: None  # e.g. for a dashboard

    def solver(self) -> engine.ModelSolver:
        return engine.ModelSolver(self.model, self.tokenizer)

    def _train(self, steps: int, lr: float, warmup: int, seed: int, what: str) -> dict[str, Any]:
        stream = engine.ExampleStream(
            self.mixture.draw,
            self.tokenizer,
            seed,
            programs=self.programs.draw if self.program_share else None,
            program_share=self.program_share,
            batch_size=self.cfg.batch_size,
        )
        collator = engine.Collator(self.tokenizer.pad_token_id, self.cfg.position, self.cfg.n_positions, seed)
        return engine.train_steps(
            self.model,
            self.optimizer,
            stream,
            collator,
            steps=steps,
            lr=lr,
            warmup=warmup,
            decay_fraction=self.cfg.decay_fraction,
            batch_size=self.cfg.batch_size,
            seed=seed,
            progress=lambda done, total: self.progress(what, done, total),
        )

    def generation0(self) -> dict[str, Any]:
        """Train the labelled range from streamed generator labels (the mixture holds no rounds yet)."""
        started = time.time()
        result = self._train(self.cfg.gen0_steps, self.cfg.gen0_lr, self.cfg.gen0_warmup, self.seed, "generation 0")
        return {**result, "seconds": round(time.time() - started, 1)}

    def save(self, path: Path) -> None:
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, path)

    def load(self, path: Path) -> None:
        state = torch.load(path, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def round(self) -> dict[str, Any]:
        """Label the frontier (all of this round's solve budget there), train on the mixture, move the curriculum."""
        kept, record = self.label_round()
        return self.train_round(kept, record)

    def label_round(self) -> tuple[list[Label], dict[str, Any]]:
        """This round's kept labels at the frontier (none for the control) and what the filters did."""
        self.rounds_done += 1
        rng = random.Random(f"{self.seed}/round/{self.rounds_done}")
        started = time.time()
        record: dict[str, Any] = {"round": self.rounds_done, "level": self.frontier.level}
        kept: list[Label] = []
        if self.arm.sources:
            kept, stats, by_source = self._label(self.frontier.level, rng)
            record["labels"] = stats.to_dict()
            record["kept_by_source"] = {src: sum(k.source == src for k in kept) for src in self.arm.sources}
            if len(by_source) > 1:
                record["labels_by_source"] = {s: st.to_dict() for s, st in by_source.items()}
        record["label_seconds"] = round(time.time() - started, 1)
        return kept, record

    def train_round(self, kept: list[Label], record: dict[str, Any]) -> dict[str, Any]:
        """Add ``kept`` as the newest round, train ``round_steps`` from where the model is, then move the curriculum."""
        started = time.time()
        self.mixture.add([(k.prompt, k.answer) for k in kept])
        self.programs.add([(k.program_prompt, k.program) for k in kept if k.program_prompt and k.program])
        if self.arm.filters.agree_previous:
            self.previous = engine.ModelSolver(copy.deepcopy(self.model), self.tokenizer)
        if "labels" in record:
            self.frontier, why = curriculum.step(
                self.frontier,
                record["labels"]["curriculum_yield"],
                advance_yield=self.cfg.advance_yield,
                max_level=self.cfg.max_level,
                max_holds=self.cfg.max_holds,
                fixed=self.cfg.fixed_advance,
            )
            record.update(curriculum=why, saturated=self.frontier.saturated)
        seed = self.seed * 1000 + self.rounds_done
        what = f"round {self.rounds_done}: training"
        record.update(self._train(self.cfg.round_steps, self.cfg.round_lr, self.cfg.round_warmup, seed, what))
        record["seconds"] = round(record["label_seconds"] + time.time() - started, 1)
        return record

    def _label(self, level: int, rng: random.Random) -> tuple[list[Label], LabelStats, dict[str, LabelStats]]:
        """Each source labels chunks at ``level`` until ``min_kept`` are kept or ``candidates_max`` are spent.

        Sources are tried in order; one problem keeps the first source's label. The combined stats count every
        candidate; their ``curriculum_yield``, which moves the curriculum, is the best source's yield.
        """
        solver = self.solver()
        kept: dict = {}
        by_source: dict[str, LabelStats] = {}
        for source in self.arm.sources:
            self.progress(f"round {self.rounds_done}: {source} labels at level {level}", 0, 1)
            chunk = self.cfg.tool_chunk if source == "tool" else self.cfg.candidates_chunk
            total = LabelStats(level=level, source=source)
            mine = 0
            while total.candidates == 0 or (mine < self.cfg.min_kept and total.candidates < self.cfg.candidates_max):
                problems = [self.family.sample(level, rng) for _ in range(chunk)]
                more, stats = label(
                    self.family,
                    problems,
                    source,
                    solver,
                    filters=self.arm.filters,
                    trusted=self.cfg.labelled_max,
                    rng=rng,
                    previous=self.previous,
                    runner=self.runner,
                    program_tokens=self.cfg.n_positions,
                )
                mine += len(more)
                for k in more:
                    kept.setdefault(k.problem, k)
                total.merge(stats)
            by_source[source] = total
        best = max(by_source.values(), key=lambda st: st.yield_)
        combined = LabelStats(level=level, source="+".join(self.arm.sources))
        for st in by_source.values():
            combined.merge(st)
        # The combined figures describe every candidate; the yield that moves the curriculum is the best source's.
        combined.kept = len(kept)
        combined.audited_correct = sum(k.audit_correct for k in kept.values())
        combined.best_yield = best.yield_
        return list(kept.values()), combined, by_source
