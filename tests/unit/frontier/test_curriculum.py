"""The frontier curriculum moves on yield and holds, then reports saturation."""

from selfloop.frontier.curriculum import Frontier, step

KW = {"advance_yield": 0.3, "max_level": 7, "max_holds": 3}


def test_advances_when_the_yield_clears_the_threshold():
    state, why = step(Frontier(5), 0.31, **KW)
    assert state == Frontier(6) and "advance to 6" in why


def test_holds_and_saturates_after_repeated_holds():
    state = Frontier(5)
    for n in (1, 2):
        state, why = step(state, 0.1, **KW)
        assert state.level == 5 and state.holds == n and not state.saturated
    state, why = step(state, 0.1, **KW)
    assert state.saturated and "saturated" in why
    state, _ = step(state, 0.5, **KW)
    assert state == Frontier(6)  # a good round after a hold moves on and clears the count


def test_fixed_mode_advances_every_round_and_the_cap_holds():
    assert step(Frontier(5), 0.0, fixed=True, **KW)[0].level == 6
    state, why = step(Frontier(7), 1.0, **KW)
    assert state.level == 7 and "max_level" in why
