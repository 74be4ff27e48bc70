"""The gate split of the task suite: disjoint from the reported split, fixed, and judged question by question."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sandbox_helpers import backend_or_skip, config

from selfloop.config import GateConfig, JudgeConfig, TasksConfig
from selfloop.sandbox import Sandbox
from selfloop.tasks.families import FAMILIES, is_heldout
from selfloop.train.gate import decide
from selfloop.train.suite import TaskSuite, build_items, fingerprint, gate_items, summarize

FRACTION = 0.1


def keys(items):
    return {(i.task.family, i.task.difficulty, i.task.id) for i in items}


def test_the_gate_split_is_disjoint_from_the_reported_split_and_fixed():
    cfg = TasksConfig(max_difficulty=5, heldout_per_level=8, gate_per_level=16)
    reported, gate = build_items(cfg, FRACTION), gate_items(cfg, FRACTION)
    assert keys(reported) and keys(gate)
    assert not keys(reported) & keys(gate)
    assert all(is_heldout(i.task, FRACTION) for i in gate)  # never trained on: solve draws train-split problems
    assert fingerprint(gate_items(cfg, FRACTION)) == fingerprint(gate)  # the same questions in the same order
    per_level = {}
    for i in gate:
        if i.mode == "answer":
            per_level[(i.task.family, i.task.difficulty)] = per_level.get((i.task.family, i.task.difficulty), 0) + 1
    assert {k: v for k, v in per_level.items() if k[1] >= 3} == {(f, d): 16 for f in cfg.families for d in (3, 4, 5)}
    # Even with the reported seed, the gate split leaves out every reported task.
    same_seed = gate_items(cfg.model_copy(update={"gate_seed": cfg.heldout_seed}), FRACTION)
    assert not keys(reported) & keys(same_seed)
    assert fingerprint(gate_items(cfg.model_copy(update={"gate_seed": 5}), FRACTION)) != fingerprint(gate)


def test_summarize_keeps_per_question_outcomes_in_item_order():
    cfg = TasksConfig(families=["reverse"], max_difficulty=2, heldout_per_level=2, modes=["answer"])
    items = build_items(cfg, FRACTION)
    result = summarize(items, [True, False, False, True])
    assert result["outcomes"] == {"reverse": {"1": "10", "2": "01"}}
    assert result["tasks"] == {"reverse": 0.5}


class Scripted(TaskSuite):
    """A 'model' that answers right exactly the questions whose index is in ``right``."""

    right: set[int] = set()

    def answers(self, model, tokenizer):
        out = []
        for k, item in enumerate(self.items):
            answer = FAMILIES[item.task.family].labelled(item.task).answer
            out.append(answer if k in self.right else "no idea")
        return out


@pytest.fixture(scope="module")
def sandbox():
    cfg = config(backend="bwrap", pool_size=2, timeout_s=3.0)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        yield sb


def test_the_gate_table_compares_two_models_question_by_question(sandbox):
    @contextmanager
    def source():
        yield sandbox

    cfg = TasksConfig(families=["addition"], max_difficulty=4, gate_per_level=12, modes=["answer"])
    suite = Scripted(cfg, JudgeConfig(), source, heldout_fraction=FRACTION, split="gate")
    levels = [i.task.difficulty for i in suite.items]
    assert levels == sorted(levels) and [levels.count(d) for d in (2, 3, 4)] == [12, 12, 12]
    assert levels.count(1) < 12  # one-digit addition has few held-out problems, the reported split takes them
    suite.right = {k for k, lv in enumerate(levels) if lv <= 2}
    champion = suite.table(object(), None)
    suite.right = {k for k, lv in enumerate(levels) if lv <= 3}
    challenger = suite.table(object(), None)
    assert champion["items"] == challenger["items"] == fingerprint(suite.items)
    assert champion["outcomes"]["addition"]["2"] == "1" * 12 and champion["outcomes"]["addition"]["3"] == "0" * 12
    assert challenger["outcomes"]["addition"]["3"] == "1" * 12
    d = decide({"loss": 1.0, "gate": challenger}, {"loss": 1.0, "gate": champion}, GateConfig())
    assert d.promote and "addition pass@1 at levels 3-4: +0.500" in d.reason  # level 2 is mastered
