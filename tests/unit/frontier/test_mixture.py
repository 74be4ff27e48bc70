"""The round mixture: the newest slot, replay, and the control's refill."""

import random
from collections import Counter

from selfloop.frontier.families import Addition
from selfloop.frontier.mixture import Mixture


def kinds(mix, n=4000):
    rng = random.Random(0)
    newest = set(mix.rounds[-1]) if mix.rounds else set()
    older = set(mix._older)
    counts = Counter()
    for _ in range(n):
        ex = mix.draw(rng)
        counts["newest" if ex in newest else "older" if ex in older else "fresh"] += 1
    return {k: v / n for k, v in counts.items()}


def test_control_mixture_is_all_fresh_labelled_range():
    mix = Mixture(Addition(), 4, new_share=0.5, min_kept=10)
    mix.add([])
    rng = random.Random(0)
    for _ in range(200):
        prompt, answer = mix.draw(rng)
        a, b = (int(x[::-1]) for x in prompt.rstrip("=").split("+"))
        assert max(len(str(a)), len(str(b))) <= 4 and answer == Addition().solve((a, b))


def test_newest_round_is_about_half_and_older_rounds_replay():
    mix = Mixture(Addition(), 4, new_share=0.5, min_kept=10)
    mix.add([(f"{i}+0=", "x") for i in range(100, 120)])
    mix.add([(f"{i}+1=", "y") for i in range(200, 220)])
    share = kinds(mix)
    assert abs(share["newest"] - 0.5) < 0.05
    assert abs(share["older"] - 0.25) < 0.05 and abs(share["fresh"] - 0.25) < 0.05


def test_a_small_newest_round_gets_a_smaller_slot():
    mix = Mixture(Addition(), 4, new_share=0.5, min_kept=100)
    mix.add([(f"{i}+0=", "x") for i in range(10)])
    assert abs(kinds(mix)["newest"] - 0.05) < 0.02
