"""Counterfactual variants catch task programs that lie: a program that prints the right answer
without computing it from the inputs is rejected by the task judge and scores 0 in the held-out
suite; honest programs pass. Real sandbox (process backend: these programs are not hostile)."""

from __future__ import annotations

import ast
import json
import random
from contextlib import contextmanager

import pytest
from lifecycle_helpers import make_project
from pydantic import ValidationError
from sandbox_helpers import backend_or_skip, config, judge_sources

from selfloop.config import JudgeConfig, TasksConfig
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.judge.substitute import NotParsed, parse, substitute
from selfloop.judge.task_judge import HARD_CODED
from selfloop.records import TaskRecord, Variant
from selfloop.rework import solve
from selfloop.rework.phase import run_judge, store_drafts
from selfloop.sandbox import Sandbox
from selfloop.store import Store
from selfloop.tasks.families import FAMILIES, VARIANTS
from selfloop.train.suite import TaskSuite

FRACTION = 0.1


class Counting:
    """The sandbox, counting the jobs it is given (the cost of judging)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.capacity = sandbox.capacity
        self.jobs = []

    def run(self, job):
        self.jobs.append(job)
        return self.sandbox.run(job)


@pytest.fixture(scope="module")
def real_sandbox():
    cfg = config(backend="process", pool_size=2, timeout_s=3.0)
    with Sandbox(cfg, backend_or_skip("process", cfg)) as sb:
        yield sb


@pytest.fixture
def sandbox(real_sandbox):
    return Counting(real_sandbox)


def judge(sandbox, candidates):
    return Pipeline(JudgeContext(JudgeConfig(), sandbox=sandbox), kinds=["task"]).judge_batch(candidates)


def program(text, task):
    return Candidate("task", text, task=task, metadata={"answer_kind": "program"})


def sum_checker(a, b):
    return f"def check(answer):\n    return answer.strip() == str({a} + {b})\n"


ADD = TaskRecord(
    id="123+456",
    family="addition",
    difficulty=3,
    prompt="123 + 456",
    checker=sum_checker(123, 456),
    variants=[
        Variant(substitute={"123": "808", "456": "271"}, checker=sum_checker(808, 271)),
        Variant(substitute={"123": "350", "456": "117"}, answer="467"),
    ],
)
NO_INPUTS = f"{HARD_CODED} (variant 1: the program contains none of the task's inputs 123, 456)"

# (why, program, accepted, reason prefix or None, sandbox jobs run)
CASES = [
    ("prints the answer", "print(579)", False, NO_INPUTS, 1),
    # None of the inputs and wrong: rejected for what it does, not as hard-coded.
    ("prints a wrong constant", "print(1 / 0)", False, "error: ", 1),
    ("mentions an input, prints the answer", "x = 123\nprint(579)", False, f"{HARD_CODED} (variant 1: fail: ", 2),
    (
        "mentions both inputs, ignores them",
        "print(123 + 456 - 123 - 456 + 579)",
        False,
        f"{HARD_CODED} (variant 1: fail: ",
        2,
    ),
    ("computes", "print(123 + 456)", True, None, 3),
    ("computes from names", "a, b = 123, 456\nprint(a + b)", True, None, 3),
    # A str constant equal to an input is that input too: parsing a number from text computes.
    ("computes from text", 'print(int("123") + 456)', True, None, 3),
    ("computes, fenced", "Sure:\n```python\nprint(sum([123, 456]))\n```\n", True, None, 3),
    ("wrong", "print(123 - 456)", False, "fail: ", 1),
    ("exits early", "import os\nos._exit(0)\nprint(123 + 456)", False, "fail: ", 1),
    ("does not parse", "print(123 +", False, "the program does not parse: ", 0),
]


@pytest.mark.parametrize("why, text, ok, reason, jobs", CASES, ids=[c[0] for c in CASES])
def test_programs_must_follow_their_inputs(sandbox, why, text, ok, reason, jobs):
    (outcome,) = judge(sandbox, [program(text, ADD)])
    verdict = outcome.verdicts[0]
    assert outcome.accepted == ok, verdict.reason
    if reason is not None:
        assert verdict.reason.startswith(reason), verdict.reason
    assert len(sandbox.jobs) == jobs  # jobs stop at the first failure


def test_variant_jobs_run_the_program_with_the_literals_replaced(sandbox):
    (outcome,) = judge(sandbox, [program("a, b = 123, 456\nprint(a + b)  # adds", ADD)])
    assert outcome.accepted
    original, first, second = sandbox.jobs
    assert original.files["solution.py"] == "a, b = 123, 456\nprint(a + b)  # adds"
    assert first.files["solution.py"] == "a, b = (808, 271)\nprint(a + b)" and first.checker == ADD.variants[0].checker
    assert "350, 117" in second.files["solution.py"] and second.expected == "467" and second.checker is None


def test_tasks_without_variants_are_judged_as_before(sandbox):
    plain = ADD.model_copy(update={"variants": None})
    as_mapping = ADD.model_dump(exclude={"variants"})
    outcomes = judge(
        sandbox, [program("print(579)", plain), program("print(579)", as_mapping), Candidate("task", "579", task=ADD)]
    )  # a direct answer is not a program
    assert all(o.accepted for o in outcomes) and len(sandbox.jobs) == 3


def test_variants_apply_to_a_task_given_as_a_mapping(sandbox):
    task = ADD.model_dump(exclude_none=True)  # how a solve candidate carries its task
    outcomes = judge(sandbox, [program("print(579)", task), program("print(123 + 456)", task)])
    assert [o.accepted for o in outcomes] == [False, True] and outcomes[0].verdicts[0].reason == NO_INPUTS


def test_malformed_variants_of_a_mapping_task_are_a_clear_reject(sandbox):
    task = {**ADD.model_dump(exclude_none=True), "variants": [{"substitute": {"123": "9"}}]}
    (outcome,) = judge(sandbox, [program("print(123 + 456)", task)])
    assert not outcome.accepted and "the task's variants are malformed" in outcome.verdicts[0].reason
    assert "exactly one of checker or answer" in outcome.verdicts[0].reason and not sandbox.jobs


def test_tests_tasks_are_judged_by_their_tests_only(sandbox):
    func = TaskRecord(
        id="dbl",
        family="functions",
        difficulty=1,
        prompt="Write double(x) for 21.",
        tests="assert double(21) == 42\n",
        variants=[Variant(substitute={"21": "5"}, answer="10")],
    )
    (outcome,) = judge(sandbox, [program("def double(x):\n    return 2 * x\n", func)])
    assert outcome.accepted and len(sandbox.jobs) == 1


# --------------------------------------------------------------------------- the generated families


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_problems_catch_hard_coded_programs(sandbox, family):
    gen = FAMILIES[family]
    rng = random.Random(11)
    tasks = [gen.make(d, rng) for d in (2, 3, 5)]
    honest = [gen.labelled(t).solution for t in tasks]
    # The answer printed as a literal, and the same after a line that mentions every input.
    lying = [f"print({gen.labelled(t).answer!r})" for t in tasks]
    mentioning = [f"inputs = {sorted(t.variants[0].substitute)!r}\nprint({gen.labelled(t).answer!r})" for t in tasks]
    cands = [program(p, t) for ps in (honest, lying, mentioning) for p, t in zip(ps, tasks)]
    outcomes = judge(sandbox, cands)
    assert [o.accepted for o in outcomes] == [True] * 3 + [False] * 6, [o.reason for o in outcomes]
    assert all(o.verdicts[0].reason.startswith(HARD_CODED) for o in outcomes[3:])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_variants_are_fixed_counterfactuals(family):
    gen = FAMILIES[family]
    for d in range(1, 7):
        task = gen.make(d, random.Random(d))
        again = gen.make(d, random.Random(d))
        assert again == task and len(task.variants) == VARIANTS == len(
            {json.dumps(v.substitute) for v in task.variants}
        )
        assert gen.labelled(task).variants == task.variants
        answer = gen.labelled(task).answer
        originals = task.prompt.removeprefix("reverse ").split(" + ")
        for v in task.variants:
            assert sorted(v.substitute) == sorted(set(originals))
            assert all(len(new) == len(old) and new not in originals for old, new in v.substitute.items())
            # The variant's own answer differs, so a constant output always fails one.
            variant_task = TaskRecord(
                id="v", family=family, difficulty=d, prompt=_apply(task.prompt, v.substitute), answer="x"
            )
            assert gen.labelled(variant_task).answer != answer
            if family == "reverse" and d > 1:
                (word,) = v.substitute.values()
                assert word != word[::-1]  # not a palindrome: printing the input fails too


def _apply(prompt, substitute):
    words = prompt.split(" ")
    return " ".join(substitute.get(w, w) for w in words)


# --------------------------------------------------------------------------- the held-out suite


class HardCoder(TaskSuite):
    """A 'model' that answers every question right, and as a program prints the answer as a literal."""

    def answers(self, model, tokenizer):
        out = []
        for item in self.items:
            answer = FAMILIES[item.task.family].labelled(item.task).answer
            out.append(answer if item.mode == "answer" else f"print({answer!r})")
        return out


def test_the_suite_scores_a_hard_coding_program_zero(real_sandbox):
    @contextmanager
    def source():
        yield real_sandbox

    suite = HardCoder(
        TasksConfig(max_difficulty=3, heldout_per_level=4), JudgeConfig(), source, heldout_fraction=FRACTION
    )
    model = object()
    suite(model, None)
    detail = suite.detail(model)
    for family in ("addition", "reverse"):
        assert [detail[family][d]["answer"]["pass_at_1"] for d in ("1", "2", "3")] == [1.0, 1.0, 1.0]
    assert [detail["addition"][d]["program"]["pass_at_1"] for d in ("1", "2", "3")] == [0.0, 0.0, 0.0]
    # Reversing one letter is the identity: printing it is indistinguishable from computing it.
    assert [detail["reverse"][d]["program"]["pass_at_1"] for d in ("2", "3")] == [0.0, 0.0]


# --------------------------------------------------------------------------- records


def test_bad_variants_are_clear_validation_errors():
    base = {"id": "1+2", "family": "addition", "difficulty": 1, "prompt": "1 + 2", "answer": "3"}
    bad = [
        ({"substitute": {"1": "5"}}, "exactly one of checker or answer"),
        (
            {"substitute": {"1": "5"}, "answer": "7", "checker": "def check(a): return True"},
            "exactly one of checker or answer",
        ),
        ({"substitute": {}, "answer": "2"}, "at least 1 item"),
        ({"substitute": {"1": "1"}, "answer": "3"}, "must change the literal"),
        ({"substitute": {"1": "one"}, "answer": "3"}, "a number must be replaced by a number"),
        (
            {"substitute": {"7": "5"}, "answer": "7"},
            r"variant 1 substitutes \['7'\] which the prompt '1 \+ 2' does not contain",
        ),
        ({"substitute": {"1": "5"}, "answer": "7", "prompt": "x"}, "Extra inputs are not permitted"),
        ("1 -> 5", "valid dictionary"),
    ]
    for variant, message in bad:
        with pytest.raises(ValidationError, match=message):
            TaskRecord.model_validate({**base, "variants": [variant]})
    ok = TaskRecord.model_validate({**base, "variants": [{"substitute": {"1": "5", "2": "4"}, "answer": "9"}]})
    assert TaskRecord.model_validate_json(ok.canonical_json()) == ok


def test_records_with_variants_round_trip_through_rework_and_ingest(tmp_path):
    settings = {
        "rework": {"enabled": True, "rewrite_share": 0.0, "synthesize_share": 0.0, "solve_share": 1.0},
        "sandbox": {"backend": "process", "pool_size": 2, "timeout_s": 5},
    }
    _, cfg, paths = make_project(tmp_path, settings)
    task = FAMILIES["addition"].make(3, random.Random(4))
    (paths.orig / "tasks.jsonl").write_text(task.canonical_json() + "\n")
    ask = solve.Ask(task, (), "program", FAMILIES["addition"].render(task, "program", "reversed"))
    a, b = task.prompt.split(" + ")
    drafts = [
        solve.draft(ask, f"print({a} + {b})", cfg.tasks),
        solve.draft(ask, f"print({int(a) + int(b)})", cfg.tasks),
    ]

    model_source, sandbox_source = judge_sources("process")
    with Store.open(paths.db) as store:
        from selfloop.ingest.ingestor import Ingestor

        Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
        (orig,) = store.query("SELECT content FROM documents WHERE origin = 'orig' AND kind = 'task'")
        assert TaskRecord.model_validate_json(orig["content"]) == task
        store_drafts(store, 1, 0, drafts)
        out = run_judge(cfg, paths, store, 1, model_source, sandbox_source)
        assert out["accepted"] == 1 and out["counts"]["rejected:task/hard-coded"] == 1
        tasks = (paths.rework / "tasks").rglob("*.jsonl")  # the cycle's preference pair went to pairs/
        (written,) = [json.loads(line) for f in tasks for line in f.read_text().splitlines()]
        assert TaskRecord.model_validate(written).variants == task.variants
        (doc,) = store.query("SELECT content FROM documents WHERE origin = 'rework' AND kind = 'task'")
        assert TaskRecord.model_validate_json(doc["content"]).variants == task.variants


# --------------------------------------------------------------------------- substitution (pure)


def test_substitution_replaces_constants_not_text():
    tree = parse('n = 123\nm = 1234\nx123 = "123"\nb = True\nf = 123.0\ns = f"{n} 123"\nprint(n + 456, x123)')
    out = substitute(tree, {"123": "9", "456": "7"})
    assert out.source == "n = 9\nm = 1234\nx123 = '9'\nb = True\nf = 123.0\ns = f'{n} 123'\nprint(n + 7, x123)"
    assert out.replaced == 3
    assert substitute(tree, {"abc": "xyz"}).replaced == 0
    words = substitute(parse("w = 'abc'\nprint(w[::-1], 'abcd', 'ab' + 'c')"), {"abc": "xyz"})
    assert words.source == "w = 'xyz'\nprint(w[::-1], 'abcd', 'ab' + 'c')" and words.replaced == 1
    assert ast.dump(tree) == ast.dump(
        parse('n = 123\nm = 1234\nx123 = "123"\nb = True\nf = 123.0\ns = f"{n} 123"\nprint(n + 456, x123)')
    )


def test_unparsable_programs_say_why():
    with pytest.raises(NotParsed, match="never closed"):
        parse("print(1 +")
    with pytest.raises(NotParsed, match="null"):
        parse("print(1)\0")
