"""One training run's directory: the name of every file in it, and the run's resolved config.

A run dir is ``<state>/runs/gen-NNNN`` (under a recipe search, each recipe trains in
its ``recipe-K`` below it). The parent writes the data snapshot, the preference pairs
and the resolved config once, before the first launch; the training child reads only
those and writes the rest. The resolved config is the full ``Config`` as JSON plus a
``"run"`` table (``RunValues``); the registry keeps the same file next to the model.

Not covered: writing the snapshot (``selfloop.train.data``) or training (``selfloop.train.run``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selfloop.config import Config, ProjectPaths, parse_config
from selfloop.errors import SelfloopError
from selfloop.model.registry import LOGS, METRICS, METRICS_CSV, RESOLVED_CONFIG, TRAIN_LOG

RUN_KEY = "run"  # the resolved config's table of run values (Config itself has no such key)
# The child's side of the contract: exit 3 when interrupted (its checkpoint saved), and on a failure
# one line of its own in the log that the launcher reports.
EXIT_INTERRUPTED = 3
FAILURE_PREFIX = "selfloop.train failed: "


@dataclass(frozen=True)
class RunValues:
    """What this run trains, beyond the Config: which generation, from where, how long, how fast."""

    generation: int
    init: str  # "scratch" or a local model dir
    steps: int
    learning_rate: float
    db: str  # the state database the child reports its metrics to
    source: str | None = None  # the config file these values were read from (a record; the child never reads it)

    @classmethod
    def of(
        cls,
        cfg: Config,
        paths: ProjectPaths,
        *,
        generation: int,
        init: str,
        steps: int,
        learning_rate: float | None = None,
        source: Path | None = None,
    ) -> RunValues:
        """The run's values; ``learning_rate`` (a recipe's) overrides ``[train]``'s."""
        return cls(
            generation=generation,
            init=init,
            steps=steps,
            learning_rate=cfg.train.learning_rate if learning_rate is None else float(learning_rate),
            db=str(paths.db),
            source=None if source is None else str(Path(source).resolve()),
        )


class RunDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # Written by the parent before the first launch.
    data = property(lambda self: self.path / "data.jsonl")
    pairs = property(lambda self: self.path / "pairs.jsonl")
    config = property(lambda self: self.path / RESOLVED_CONFIG)
    recipes = property(lambda self: self.path / "recipes.json")  # the plan of a recipe search
    log = property(lambda self: self.path / TRAIN_LOG)
    # Written by the child.
    tokenizer = property(lambda self: self.path / "tokenizer")
    arrow = property(lambda self: self.path / "arrow")
    checkpoints = property(lambda self: self.path / "checkpoints")
    final = property(lambda self: self.path / "final")
    sft = property(lambda self: self.path / "sft")  # the SFT stage's own output when DPO follows
    preference = property(lambda self: self.path / "preference")
    result = property(lambda self: self.path / "result.json")
    metrics = property(lambda self: self.path / METRICS)
    metrics_csv = property(lambda self: self.path / METRICS_CSV)
    logs = property(lambda self: self.path / LOGS)  # the Trainer integrations' own (TensorBoard)

    def kept(self) -> list[Path]:
        """What the registry keeps beside the weights: the training metrics and logs."""
        return [self.metrics, self.metrics_csv, self.log, self.logs]

    def recipe(self, k: int) -> RunDir:
        """Recipe ``k``'s run of a recipe search."""
        return RunDir(self.path / f"recipe-{k}")

    def write_config(self, cfg: Config, run: RunValues) -> None:
        """The resolved config, once: a resumed run trains with the values it started with."""
        if self.config.is_file():
            return
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps({**cfg.model_dump(mode="json"), RUN_KEY: asdict(run)}, indent=2), encoding="utf-8")
        tmp.replace(self.config)

    def resolved_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SelfloopError(f"{self.config}: no resolved config (the parent writes it before launching)") from None

    def read_config(self) -> tuple[Config, RunValues]:
        """The Config and the run values the child trains with (the environment has no say: it did in the parent)."""
        raw = self.resolved_config()
        run = RunValues(**raw.pop(RUN_KEY))
        return parse_config(raw, source=str(self.config), env=False), run


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest Trainer checkpoint that was written completely, removing torn ones.

    Trainer writes a checkpoint folder in place and ``trainer_state.json`` last, so
    a kill -9 during a save leaves a folder without it; resuming from that would
    fail, resuming from the one before loses only ``save_steps`` steps.
    """
    if not folder.is_dir():
        return None
    found = sorted(
        (int(p.name.split("-")[1]), p)
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[1].isdigit()
    )
    for _, path in reversed(found):
        if (path / "trainer_state.json").is_file():
            return str(path)
        shutil.rmtree(path)
    return None
