"""The frontier gate on hand-made outcome tables."""

from selfloop.frontier.gate import decide

KW = {"mastery": 0.9, "margin": 0.02, "alpha": 0.05}


def table(*rates, n=300):
    """Per level (1, 2, ...), n outcomes with the given share right (the first ones)."""
    return {lv: [i < round(r * n) for i in range(n)] for lv, r in enumerate(rates, start=1)}


def test_a_clear_gain_at_the_frontier_is_promoted():
    d = decide(table(1.0, 1.0, 0.2), table(1.0, 1.0, 0.6), 3, **KW)
    assert d.promote and "level 3: 0.200 -> 0.600" in d.reason
    assert d.figures["mastered_levels"] == [1, 2]


def test_a_gain_inside_the_noise_is_not():
    """One question out of sixteen: today's flat rule would call +0.06 an improvement."""
    d = decide(table(1.0, 0.5, n=16), table(1.0, 0.5625, n=16), 2, **KW)
    assert not d.promote and "not better beyond noise" in d.reason


def test_forgetting_a_mastered_level_is_rejected_with_its_interval():
    d = decide(table(1.0, 0.98, 0.2), table(1.0, 0.90, 0.9), 3, **KW)
    assert not d.promote
    assert d.reason.startswith("mastered levels 1..2: -0.040 [") and "below -0.02" in d.reason


def test_a_level_not_yet_mastered_is_not_guarded():
    # Level 2 at 0.5 is not mastered: a drop there is not forgetting (it is the frontier's neighbour).
    d = decide(table(1.0, 0.5, 0.1), table(1.0, 0.45, 0.5), 3, **KW)
    assert d.promote and d.figures["mastered_levels"] == [1]
