"""The built-in families: formats, and checks that a right model always passes (pure, no model)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfloop.errors import ConfigError
from selfloop.frontier.families import Addition, Reverse, Subtraction, load_family
from selfloop.frontier.family import Family

FAMILIES = [Addition(), Subtraction(), Reverse()]


def test_addition_format_is_reversed_and_zero_padded():
    fam = Addition()
    assert fam.prompt((123, 45)) == "321+54="
    assert fam.solve((123, 45)) == "8610"  # 168 -> 0168 -> reversed
    assert fam.parse((123, 45), "8610") == "8610"
    assert fam.parse((123, 45), "861") is None  # the width is fixed by the problem: a short answer is malformed
    assert fam.parse((123, 45), "86a0") is None


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_sample_gives_the_level_asked(fam):
    rng = random.Random(0)
    for level in range(1, 9):
        assert {fam.level_of(fam.sample(level, rng)) for _ in range(50)} == {level}


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
@settings(max_examples=150, deadline=None)
@given(level=st.integers(1, 12), trusted=st.integers(2, 6), seed=st.integers(0, 2**31))
def test_checks_reproduce_the_right_answer(fam, level, trusted, seed):
    """A model that is always right passes every check: checks never drop a right label."""
    rng = random.Random(seed)
    problem = fam.sample(level, rng)
    for check in fam.checks(problem, trusted, rng):
        answers = [fam.parse(q, fam.solve(q)) for q in check.problems]
        assert check.combine(answers) == fam.solve(problem), (check.name, problem)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_split_problems_are_easier_than_the_problem(fam):
    """Past the trusted range a split check exists and asks only easier problems."""
    rng = random.Random(1)
    for level in (5, 6, 7, 9):
        problem = fam.sample(level, rng)
        split = [c for c in fam.checks(problem, 4, rng) if c.name == "split"]
        assert split, level
        assert all(fam.level_of(q) < level for q in split[0].problems)


def test_addition_split_catches_a_wrong_carry():
    fam = Addition()
    problem = (56789, 43210)  # 99999: no carry anywhere
    split = next(c for c in fam.checks(problem, 4, random.Random(0)) if c.name == "split")
    right = [fam.solve(q) for q in split.problems]
    assert split.combine(right) == fam.solve(problem)
    wrong_label = fam.solve((56790, 43210))  # a label off by one in the carry chain
    assert split.combine(right) != wrong_label


def test_builtin_families_satisfy_the_protocol():
    for fam in FAMILIES:
        assert isinstance(fam, Family)


def test_load_family_by_name_and_by_module_object():
    assert load_family("addition").name == "addition"
    assert load_family("selfloop.frontier.families:Reverse").name == "reverse"
    with pytest.raises(ConfigError, match="not built in"):
        load_family("multiplication")
    with pytest.raises(ConfigError, match="cannot import"):
        load_family("no_such_module_xyz:Family")
    with pytest.raises(ConfigError, match="lacks"):
        load_family("random:Random")
