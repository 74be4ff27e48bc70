"""Tool labels: programs the model wrote, run in a real sandbox, kept by key-free checks; the answer key only audits."""

import random

import pytest

from selfloop.config import SandboxConfig
from selfloop.frontier.families import Addition, Reverse, Subtraction
from selfloop.frontier.label import SelfFilters, label
from selfloop.frontier.tool import Ran, SandboxRunner, tool_verdicts
from selfloop.sandbox import Sandbox


@pytest.fixture(scope="module")
def runner():
    with Sandbox(SandboxConfig(backend="process", pool_size=2)) as sandbox:
        yield SandboxRunner(sandbox)


def problems(family, level, n=12, seed=0):
    rng = random.Random(seed)
    return [family.sample(level, rng) for _ in range(n)]


@pytest.mark.parametrize("family", [Addition(), Subtraction(), Reverse()], ids=lambda f: f.name)
def test_reference_programs_pass_every_check_and_print_the_answer(family, runner):
    ps = problems(family, 7)
    attempts = tool_verdicts(family, ps, [family.program(p) for p in ps], runner, trusted=4, rng=random.Random(0))
    assert [a.verdict for a in attempts] == [None] * len(ps)
    assert [a.answer for a in attempts] == [family.solve(p) for p in ps]
    assert set("".join(family.program(p) + family.program_prompt(p) for p in ps)) <= set(family.alphabet)


def test_each_key_free_check_names_what_it_caught(runner):
    fam = Addition()
    ps = problems(fam, 7, n=6)
    right = [fam.program(p) for p in ps]
    x, y = fam.literals(ps[1])
    written = [
        f"print({fam.solve(ps[0])!r})",  # a remembered answer: the inputs are not in it
        f"print(str(int('{x}'[::-1])+int('{y}'[::-1])+1)[::-1])",  # off by one: the split disagrees
        "print((",  # does not parse
        f"x='{x}';y='{y}';raise SystemExit(1)",  # does not run to exit 0
        f"x='{x}';y='{y}';print('-')",  # prints no number
        right[5],
    ]
    x, y = fam.literals(ps[4])
    written[4] = f"x='{x}';y='{y}';print('-')"
    x, y = fam.literals(ps[3])
    written[3] = f"x='{x}';y='{y}';raise SystemExit(1)"
    verdicts = [a.verdict for a in tool_verdicts(fam, ps, written, runner, trusted=4, rng=random.Random(0))]
    assert verdicts == ["tool:literal", "tool:check:split", "tool:parse", "tool:run", "tool:shape", None]


class ProgramWriter:
    """A stand-in model that writes the family's reference program, and answers directly with nothing useful."""

    def __init__(self, family):
        self.family = family
        self.asked = []

    def greedy(self, prompts, max_new_tokens=None):
        self.asked.append(max_new_tokens)
        if max_new_tokens is None:
            return ["" for _ in prompts]
        return [self.family.program(self.problem(p)) for p in prompts]

    def problem(self, prompt):
        left, right = prompt.rstrip("?").split("+")
        return int(left[::-1]), int(right[::-1])


def test_tool_labels_are_program_stdout_and_carry_the_program(runner):
    fam = Addition()
    model = ProgramWriter(fam)
    kept, stats = label(
        fam, problems(fam, 8), "tool", model, filters=SelfFilters(), trusted=4, rng=random.Random(0), runner=runner
    )
    assert stats.kept == stats.candidates == 12 and stats.audited_accuracy == 1.0
    assert stats.greedy_correct == 0  # the direct answers were worthless; the program computed
    assert all(k.source == "tool" and k.program == fam.program(k.problem) for k in kept)
    assert all(k.program_prompt == fam.program_prompt(k.problem) for k in kept)
    assert all(k.prompt == fam.prompt(k.problem) for k in kept)  # the label trains a direct answer
    assert 160 in model.asked


class ZeroRunner:
    """A tool that runs nothing and prints zeros of the right width: consistent under every check, and wrong."""

    def run(self, programs):
        return [Ran("0" * 12) for _ in programs]


def test_the_answer_key_audits_tool_labels_but_never_selects_them():
    fam = Addition()
    kept, stats = label(
        fam,
        problems(fam, 8),
        "tool",
        ProgramWriter(fam),
        filters=SelfFilters(),
        trusted=4,
        rng=random.Random(0),
        runner=ZeroRunner(),
    )
    assert stats.kept == 12 and stats.audited_accuracy == 0.0
    assert all(k.answer == "0" * 9 and not k.audit_correct for k in kept)


def test_equal_inputs_cannot_be_told_apart_by_a_swap(runner):
    fam = Addition()
    p = (1234567, 1234567)
    [attempt] = tool_verdicts(fam, [p], [fam.program(p)], runner, trusted=4, rng=random.Random(0))
    assert attempt.verdict == "tool:ambiguous"
