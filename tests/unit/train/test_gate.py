"""The promotion gate as a pure function."""

from __future__ import annotations

import math

from selfloop.config import GateConfig
from selfloop.train.gate import decide

CFG = GateConfig(loss_tolerance=0.01, task_tolerance=0.02, min_improvement=0.005)
CHAMP = {"loss": 2.0, "text_loss": 2.1, "chat_loss": 1.5, "tasks": {"python": 0.50, "math": 0.30}}


def fig(**over):
    return {**CHAMP, "tasks": dict(CHAMP["tasks"]), **over}


def test_generation_zero_is_promoted_when_it_evaluates():
    d = decide({"loss": 5.0}, None, CFG)
    assert d.promote and "generation 0" in d.reason
    d = decide({"loss": None}, None, CFG)
    assert d.promote and "no held-out data" in d.reason
    assert not decide({"loss": math.nan}, None, CFG).promote
    d = decide({"loss": None, "error": "cannot load model"}, None, CFG)
    assert not d.promote and "does not load" in d.reason
    d = decide({"loss": None}, CHAMP, CFG)
    assert not d.promote and "no finite held-out loss" in d.reason


def test_lower_loss_promotes_and_names_the_gain():
    d = decide(fig(loss=1.9, text_loss=2.0), CHAMP, CFG)
    assert d.promote and "loss 2.0000 -> 1.9000" in d.reason
    assert d.figures["champion"] == CHAMP


def test_loss_regression_beyond_tolerance_rejects():
    assert not decide(fig(loss=2.03), CHAMP, CFG).promote
    d = decide(fig(loss=1.9, chat_loss=1.6), CHAMP, CFG)  # better overall, but chat regressed 6.7%
    assert not d.promote and "chat_loss regressed" in d.reason
    # Within tolerance counts as "not worse", but something must still improve.
    d = decide(fig(loss=2.01), CHAMP, CFG)
    assert not d.promote and "no figure improved" in d.reason
    d = decide(fig(loss=2.01, tasks={"python": 0.6, "math": 0.3}), CHAMP, CFG)
    assert d.promote and "task python" in d.reason


def test_task_drop_beyond_tolerance_rejects_even_with_better_loss():
    d = decide(fig(loss=1.5, tasks={"python": 0.47, "math": 0.30}), CHAMP, CFG)  # 0.50 -> 0.47: drop 0.03 > 0.02
    assert not d.promote and "task python pass@1 dropped" in d.reason
    assert decide(fig(loss=1.5, tasks={"python": 0.49, "math": 0.30}), CHAMP, CFG).promote  # within tolerance
    d = decide(fig(loss=1.5, tasks={"python": 0.5}), CHAMP, CFG)  # a family that vanished counts as 0
    assert not d.promote and "task math" in d.reason


def test_tiny_gains_below_min_improvement_do_not_promote():
    d = decide(fig(loss=1.995, text_loss=2.099, chat_loss=1.499), CHAMP, CFG)
    assert not d.promote and "no figure improved by at least 0.005" in d.reason
    assert decide(fig(loss=1.98), CHAMP, CFG).promote


def test_figures_missing_on_one_side_are_not_compared():
    d = decide({"loss": 1.9, "tasks": {}}, {"loss": 2.0, "chat_loss": 1.0, "tasks": {}}, CFG)
    assert d.promote and d.to_dict()["promote"] is True
