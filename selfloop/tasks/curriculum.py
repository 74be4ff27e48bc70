"""The curriculum: which difficulty each generated family works on.

A family's *level* is the difficulty new problems are generated at (with the ``solve_window - 1`` levels below).
After each cycle it advances by one only when both held-out pass@1 and label accuracy at that level clear their
thresholds; otherwise it holds, with the reason. The rule (``decide``) is pure; the levels live in the state
store's ``meta`` table under ``tasks.curriculum``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from selfloop.config import TasksConfig
from selfloop.store import Store, candidates
from selfloop.store.corpus import task_documents

APPLIED_KEY = "curriculum.applied_cycle"  # makes a resumed promote phase not advance twice
META_KEY = "tasks.curriculum"


@dataclass(frozen=True)
class Step:
    family: str
    level: int
    new_level: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(level: int, heldout: float | None, label_accuracy: float | None, cfg: TasksConfig) -> tuple[int, str]:
    """The next level and why. Pure.

    Advance by one only while both hold at the current level:

    * held-out pass@1 (the modes in ``curriculum_modes``) >= ``advance_threshold``;
    * label accuracy -- the share of this cycle's sampled answers there that the judges
      accepted -- >= ``min_label_accuracy``. Self-made labels are only as good as the
      model's hit rate: a level it rarely solves yields too little verified data to move
      on, whatever the held-out figure says.
    """
    if level >= cfg.max_difficulty:
        return level, f"at max_difficulty {cfg.max_difficulty}"
    if heldout is None:
        return level, f"no held-out pass@1 measured at level {level}"
    if heldout < cfg.advance_threshold:
        return level, f"held-out pass@1 {heldout:.2f} < {cfg.advance_threshold} at level {level}"
    if label_accuracy is None:
        return level, f"no sampled answers judged at level {level} yet"
    if label_accuracy < cfg.min_label_accuracy:
        return level, f"label accuracy {label_accuracy:.2f} < {cfg.min_label_accuracy} at level {level}"
    return level + 1, f"held-out pass@1 {heldout:.2f} and label accuracy {label_accuracy:.2f} at level {level}: advance"


def initial_level(cfg: TasksConfig, labelled_difficulties: Iterable[int]) -> int:
    """``start_level``, or one above the hardest labelled task of the family in the corpus (at least 1)."""
    if cfg.start_level:
        return min(cfg.start_level, cfg.max_difficulty)
    return min(max(labelled_difficulties, default=0) + 1, cfg.max_difficulty)


def heldout_at(detail: dict[str, Any], family: str, level: int, modes: Iterable[str]) -> float | None:
    """Held-out pass@1 of one family at one difficulty over ``modes`` (weighted by count), from a suite detail."""
    cell = detail.get(family, {}).get(str(level), {})
    figures = [cell[m] for m in modes if m in cell]
    n = sum(f["n"] for f in figures)
    return sum(f["pass_at_1"] * f["n"] for f in figures) / n if n else None


def load_levels(store: Store) -> dict[str, int]:
    raw = store.get_meta(META_KEY)
    return {k: int(v) for k, v in json.loads(raw).items()} if raw else {}


def save_levels(store: Store, levels: dict[str, int], cycle_id: int | None = None) -> None:
    """The levels, and the cycle whose step produced them, in one transaction."""
    values = {META_KEY: json.dumps(levels, sort_keys=True)}
    if cycle_id is not None:
        values[APPLIED_KEY] = str(cycle_id)
    store.set_metas(values)


def labelled_difficulties(store: Store, family: str) -> list[int]:
    """Difficulties of the family's train-split task documents in orig/ that carry a reference answer or program."""
    out = []
    for _, content in task_documents(store):
        rec = json.loads(content)
        if rec.get("family") == family and (rec.get("answer") is not None or rec.get("solution") is not None):
            out.append(int(rec["difficulty"]))
    return out


def current_levels(store: Store, cfg: TasksConfig) -> dict[str, int]:
    """Every configured family's level (a family seen for the first time starts at its initial level)."""
    levels = load_levels(store)
    return {f: levels.get(f) or initial_level(cfg, labelled_difficulties(store, f)) for f in cfg.families}


def label_accuracy(store: Store, cycle_id: int, modes: Iterable[str]) -> dict[str, dict[int, float]]:
    """Share of accepted solve samples per family and difficulty in one cycle (rationalized ones excluded)."""
    modes = set(modes)
    counts: dict[tuple[str, int], list[int]] = {}
    for r in candidates.judged(store, cycle_id, "solve"):
        meta = json.loads(r["meta"] or "{}")
        if meta.get("rationalized") or meta.get("answer_kind") not in modes:
            continue
        key = (meta["task"]["family"], int(meta["task"]["difficulty"]))
        c = counts.setdefault(key, [0, 0])
        c[0] += r["status"] == "accepted"
        c[1] += 1
    out: dict[str, dict[int, float]] = {}
    for (fam, diff), (ok, n) in counts.items():
        out.setdefault(fam, {})[diff] = ok / n
    return out


def step(store: Store, cfg: TasksConfig, detail: dict[str, Any], cycle_id: int) -> list[Step]:
    """Apply the rule to every configured family with the champion's held-out detail; saves the new levels."""
    levels = current_levels(store, cfg)
    if store.get_meta(APPLIED_KEY) == str(cycle_id):
        # A resumed promote phase: this cycle's step is already in the saved levels.
        return [Step(f, level, level, "already applied in this cycle") for f, level in levels.items()]
    accuracy = label_accuracy(store, cycle_id, cfg.curriculum_modes)
    steps = []
    for family, level in levels.items():
        new, reason = decide(
            level, heldout_at(detail, family, level, cfg.curriculum_modes), accuracy.get(family, {}).get(level), cfg
        )
        steps.append(Step(family, level, new, reason))
    save_levels(store, {s.family: s.new_level for s in steps}, cycle_id)
    for s in steps:
        if s.new_level != s.level:
            store.event("curriculum", f"{s.family}: level {s.level} -> {s.new_level} ({s.reason})", **s.to_dict())
    return steps
