"""Paired statistics on hand-made outcome tables."""

import pytest

from selfloop.frontier.stats import mean_interval, paired


def test_paired_counts_only_discordant_questions():
    a = [True] * 90 + [False] * 10
    b = [True] * 90 + [True] * 8 + [False] * 2
    p = paired(a, b)
    assert (p.b_only, p.a_only) == (8, 0)
    assert p.diff == pytest.approx(0.08)
    assert p.p_better == pytest.approx(0.5**8)  # exact McNemar: all 8 discordant go B's way
    assert p.low > 0


def test_one_question_out_of_sixteen_is_not_evidence():
    a = [True] * 8 + [False] * 8
    b = [True] * 9 + [False] * 7
    p = paired(a, b)
    assert p.p_better == 0.5 and p.low < 0 < p.high


def test_identical_outcomes_are_a_point_at_zero():
    p = paired([True, False] * 10, [True, False] * 10)
    assert (p.diff, p.low, p.high, p.p_better) == (0.0, 0.0, 0.0, 1.0)


def test_mismatched_tables_are_refused():
    with pytest.raises(ValueError):
        paired([True], [True, False])


def test_mean_interval_over_seeds():
    m = mean_interval([0.9, 1.0, 0.95])
    assert m["mean"] == pytest.approx(0.95) and m["low"] < 0.95 < m["high"]
    assert mean_interval([0.5]) == {"n": 1, "mean": 0.5, "low": 0.5, "high": 0.5}
