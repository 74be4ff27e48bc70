"""Recipe search: proposals within bounds and budget, the gate's choice, and the loop fixing a bad learning rate."""

from __future__ import annotations

import itertools
import json

import pytest
from lifecycle_helpers import fill_corpus, make_project

from selfloop.config import GateConfig, SearchConfig, TrainConfig
from selfloop.loop.cycle import PHASES, run_cycle
from selfloop.model.registry import Registry
from selfloop.store import Store
from selfloop.store.runs import last_winner
from selfloop.store.runs import recipe_history as history
from selfloop.train.launch import TrainingInterrupted
from selfloop.train.search import choose, incumbent_of, propose

NO_INGEST = [p for p in PHASES if p[0] != "ingest"]  # the corpus is inserted as document rows


def search(**kw) -> SearchConfig:
    return SearchConfig(enabled=True, **kw)


def test_the_incumbent_comes_first_and_mutants_stay_within_bounds_and_budget():
    cfg = search(recipes=6, budget_steps=400, lr_min=1e-4, lr_max=1e-2, steps_min=50, steps_max=200)
    incumbent = {"learning_rate": 1e-3, "max_steps": 100, "rework_max_share": 0.5}
    recipes = propose(incumbent, cfg, seed=7)
    assert recipes[0] == incumbent
    assert len(recipes) == len({json.dumps(r, sort_keys=True) for r in recipes})  # distinct
    assert sum(r["max_steps"] for r in recipes) <= 400
    for r in recipes:
        assert 1e-4 <= r["learning_rate"] <= 1e-2 and 50 <= r["max_steps"] <= 200 and 0 <= r["rework_max_share"] <= 1
    lrs = {r["learning_rate"] for r in recipes[1:]}
    assert any(lr > 1e-3 for lr in lrs) and any(lr < 1e-3 for lr in lrs)  # both directions tried
    assert propose(incumbent, cfg, seed=7) == recipes  # a resumed cycle proposes the same


def test_mutants_that_do_not_fit_the_budget_are_not_trained_but_the_incumbent_is():
    incumbent = {"learning_rate": 1e-3, "max_steps": 100, "rework_max_share": 0.5}
    assert propose(incumbent, search(budget_steps=50), seed=1) == [incumbent]
    only_lr = search(recipes=5, params=["learning_rate"], budget_steps=1000)
    recipes = propose(incumbent, only_lr, seed=1)
    # one value to move: the incumbent, one step up, one step down; nothing else changes
    assert sorted(r["learning_rate"] for r in recipes) == pytest.approx([1e-3 / 3, 1e-3, 3e-3])
    assert {r["max_steps"] for r in recipes} == {100} and {r["rework_max_share"] for r in recipes} == {0.5}


def test_the_incumbent_is_the_last_promoted_winner_clipped_into_the_current_bounds():
    train = TrainConfig(
        learning_rate=1e-3, max_steps=100, rework_max_share=0.5, search=search(params=["learning_rate"], lr_max=5e-3)
    )
    assert incumbent_of(train, None) == {"learning_rate": 1e-3, "max_steps": 100, "rework_max_share": 0.5}
    # searched values come from the winner (clipped); the others from [train], so a config edit takes effect
    winner = {"learning_rate": 9e-3, "max_steps": 999, "rework_max_share": 0.9}
    assert incumbent_of(train, winner) == {"learning_rate": 5e-3, "max_steps": 100, "rework_max_share": 0.5}


def figures(scale: float, addition: dict[str, str]) -> dict:
    """Paired figures: per-example text losses ``scale`` times the champion's, and gate-split outcomes."""
    sums = [3.0 + (i % 7) * 0.5 for i in range(64)]
    flat = "".join(addition.values())
    return {
        "loss": 2.0 * scale,
        "guard": {"text": {"sums": [x * scale for x in sums], "tokens": [31] * 64}},
        "gate": {"items": "q", "tasks": {"addition": flat.count("1") / len(flat)}, "outcomes": {"addition": addition}},
    }


def test_the_gate_chooses_the_best_recipe_it_would_promote():
    gate = GateConfig(min_improvement=0.01)
    mastered, frontier = "1" * 16, "0" * 16
    champion = figures(1.0, {"1": mastered, "2": frontier})
    challengers = [
        figures(0.999, {"1": mastered, "2": frontier}),  # the incumbent: nothing better beyond noise
        figures(0.75, {"1": "1" * 8 + "0" * 8, "2": "1" * 16}),  # best loss and frontier, but mastered level lost
        figures(0.95, {"1": mastered, "2": "1" * 12 + "0" * 4}),  # promotable
        figures(0.85, {"1": mastered, "2": "1" * 8 + "0" * 8}),  # promotable, lower loss but lower pass@1
        {"loss": None, "error": "does not load"},
    ]
    choice = choose(challengers, champion, gate)
    assert choice.index == 2 and choice.best == 2  # pass@1 on the gate split first, then loss
    assert [d.promote for d in choice.decisions] == [False, False, True, True, False]
    assert "addition pass@1 at mastered levels" in choice.decisions[1].reason
    losses = [figures(s, {"1": "0" * 16}) for s in (0.95, 0.9, 1.25)]  # at the floor: the loss decides
    without_tasks = choose(losses, figures(1.0, {"1": "0" * 16}), gate)
    assert without_tasks.index == 1
    none = choose([figures(s, {"1": "0" * 16}) for s in (1.1, 1.05)], figures(1.0, {"1": "0" * 16}), gate)
    assert none.index is None and none.best == 1  # the best loser goes to the gate (and is rejected)


@pytest.mark.slow
def test_the_loop_finds_a_better_learning_rate_from_a_bad_start(tmp_path, cli):
    start_lr = 1e-4  # far too low for this tiny model: 20 steps barely move it
    config_path, cfg, paths = make_project(
        tmp_path / "proj",
        {
            "train": {
                "learning_rate": start_lr,
                "gen0_steps": 16,
                "max_steps": 20,
                "lr_scheduler": "constant",
                "search": {
                    "enabled": True,
                    "recipes": 3,
                    "params": ["learning_rate"],
                    "lr_factor": 4.0,
                    "lr_min": 1e-5,
                    "lr_max": 0.05,
                    "budget_steps": 60,
                },
            },
            "tasks": {"enabled": False},
        },
    )
    cycles = 3  # generation 0, then two cycles of search
    resumed: list[str] = []
    with Store.open(paths.db) as store:
        fill_corpus(store)
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
        # The first search cycle is stopped as recipe 1 starts, then resumed: recipe 0 is not trained again.
        second = paths.runs / "gen-0001" / "recipe-1" / "train.log"
        with pytest.raises(TrainingInterrupted):
            run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST, should_stop=second.exists)
        assert (paths.runs / "gen-0001" / "recipe-0" / "final").is_dir()
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST, log=resumed.append)
        for _ in range(cycles - 2):
            run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
        rows = history(store)
        winner = last_winner(store)
        losses = [
            json.loads(r["metrics"])["loss"]
            for r in store.query("SELECT metrics FROM generations WHERE status = 'promoted' ORDER BY id")
        ]
    launched = [m.split(":")[1].strip() for m in resumed if m.startswith("train: recipe ") and "search" not in m]
    assert launched == ["recipe 1", "recipe 2"]  # recipe 0 had finished before the stop
    assert {r["generation"] for r in rows} == {1, 2}
    assert len(rows) == 6 and sum(r["chosen"] for r in rows) == 2
    by_cycle: dict[int, list] = {}
    for r in rows:
        by_cycle.setdefault(r["generation"], []).append(r)
    for recipes in by_cycle.values():
        chosen = next(r for r in recipes if r["chosen"])
        incumbent = recipes[0]
        assert chosen["figures"]["loss"] <= incumbent["figures"]["loss"]  # never worse than the incumbent
    # the search climbed, one step (x4) a cycle: the last winner trains at 16x the bad starting
    # rate, and each promoted generation's held-out loss is below the one before
    assert winner is not None and winner["learning_rate"] >= 16 * start_lr
    assert len(losses) >= 3 and all(b < a for a, b in itertools.pairwise(losses))
    reg = Registry(paths.models)
    m = reg.manifest(reg.current())
    assert m["recipe"]["learning_rate"] == pytest.approx(winner["learning_rate"]) and m["recipe"]["search"]["of"] == 3
    assert not paths.runs.exists() or not any(paths.runs.iterdir())  # recipe run dirs dropped once decided

    out = cli("models", "-c", str(config_path), env={"COLUMNS": "220"})
    assert out.returncode == 0, out.stderr
    assert "recipe search" in out.stdout and "promoted" in out.stdout and "(incumbent)" in out.stdout
