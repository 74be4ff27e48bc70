"""Recipe search: which training recipes a cycle tries, and which one wins.

A recipe is the part of ``[train]`` the search may change (``[train.search] params``). Each cycle trains the
incumbent (the last winner's recipe; at first ``[train]``) next to mutants of it, as in population-based training's
explore step; among the challengers the gate would promote, the best wins. The incumbent is always a candidate, so a
cycle never picks a recipe that did worse than it on the gate's figures.

Pure: no training, no store. ``selfloop.store.runs`` records the history; ``selfloop.loop.phases`` runs the recipes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from selfloop.config import GateConfig, SearchConfig, TrainConfig
from selfloop.train.gate import Decision, decide

SEARCHABLE = ("learning_rate", "max_steps", "rework_max_share")


def incumbent_of(train: TrainConfig, last_winner: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe a cycle starts from: the last promoted winner's values, clipped into the current bounds.

    Values the search does not (or no longer) change come from ``[train]``, so an
    edited config takes effect for them at once.
    """
    cfg = train.search
    recipe = {k: getattr(train, k) for k in SEARCHABLE}
    for key, value in (last_winner or {}).items():
        if key in cfg.params and key in recipe:
            recipe[key] = value
    return clip(recipe, cfg)


def clip(recipe: dict[str, Any], cfg: SearchConfig) -> dict[str, Any]:
    out = dict(recipe)
    out["learning_rate"] = float(min(max(out["learning_rate"], cfg.lr_min), cfg.lr_max))
    out["max_steps"] = int(min(max(round(out["max_steps"]), cfg.steps_min), cfg.steps_max))
    out["rework_max_share"] = round(float(min(max(out["rework_max_share"], 0.0), 1.0)), 6)
    return out


def mutate(recipe: dict[str, Any], cfg: SearchConfig, rng: random.Random, lr_up: bool) -> dict[str, Any]:
    """One mutant: every searched value one step up or down (the learning rate in the given direction)."""
    out = dict(recipe)
    if "learning_rate" in cfg.params:
        out["learning_rate"] = recipe["learning_rate"] * (cfg.lr_factor if lr_up else 1 / cfg.lr_factor)
    if "max_steps" in cfg.params:
        out["max_steps"] = recipe["max_steps"] * (cfg.steps_factor if rng.random() < 0.5 else 1 / cfg.steps_factor)
    if "rework_max_share" in cfg.params:
        out["rework_max_share"] = recipe["rework_max_share"] + (
            cfg.share_delta if rng.random() < 0.5 else -cfg.share_delta
        )
    return clip(out, cfg)


def propose(incumbent: dict[str, Any], cfg: SearchConfig, seed: int) -> list[dict[str, Any]]:
    """The recipes of one cycle: the incumbent first, then distinct mutants within the step budget.

    Population-based training's explore step (Jaderberg et al. 2017): every searched value
    is moved one step up or down within its bounds (learning rate and steps by a factor,
    the rework share by a delta). The learning rate alternates direction over the mutants
    (the first direction drawn at random), so a cycle of three or more recipes tries both a
    larger and a smaller one. Mutants that would exceed ``budget_steps`` together are
    dropped; the incumbent always trains.
    """
    rng = random.Random(f"{cfg.seed}/{seed}")
    recipes = [dict(incumbent)]
    spent = incumbent["max_steps"]
    attempts = 0
    first_up = rng.random() < 0.5
    while len(recipes) < cfg.recipes and attempts < 20 * cfg.recipes:
        mutant = mutate(incumbent, cfg, rng, lr_up=first_up ^ (attempts % 2 == 1))
        attempts += 1
        if mutant in recipes:  # a value pinned at its bound: try another direction
            continue
        if spent + mutant["max_steps"] > cfg.budget_steps:
            continue
        recipes.append(mutant)
        spent += mutant["max_steps"]
    return recipes


@dataclass(frozen=True)
class Choice:
    index: int | None  # the winning recipe, None when the gate promotes none of them
    best: int  # the recipe whose challenger goes to the gate (the winner, else the best loser)
    decisions: list[Decision]


def rank_key(figures: dict[str, Any]) -> tuple[float, float]:
    """Higher mean pass@1 first (on the gate split when there is one, so the reported split is not selected on),
    then lower held-out loss (missing or non-finite figures rank last)."""
    tasks = (figures.get("gate") or {}).get("tasks") or figures.get("tasks") or {}
    mean_pass = sum(tasks.values()) / len(tasks) if tasks else 0.0
    loss = figures.get("loss")
    finite = isinstance(loss, (int, float)) and math.isfinite(loss)
    return (-mean_pass, loss if finite else math.inf)


def choose(
    challengers: Sequence[dict[str, Any]],
    champion: dict[str, Any] | None,
    gate: GateConfig,
    *,
    mastered: float = 0.9,
) -> Choice:
    """The gate's decision on every recipe's challenger, and the best one it would promote.

    Among the challengers the gate would promote, the best wins (highest mean task pass@1,
    then lowest held-out loss). Selection uses the gate's own held-out data, so the
    winner's figures are optimistic by the spread of K draws: each decision is a paired
    test of one challenger, not corrected for the K recipes tried.
    """
    decisions = [decide(c, champion, gate, mastered=mastered) for c in challengers]
    order = sorted(range(len(challengers)), key=lambda i: (rank_key(challengers[i]), i))
    promotable = [i for i in order if decisions[i].promote]
    return Choice(
        index=promotable[0] if promotable else None, best=promotable[0] if promotable else order[0], decisions=decisions
    )
