"""The judges framework (registry, entry points, pipelines) and the sandboxed
python and task judges on good and bad candidates, with a real sandbox."""

from __future__ import annotations

import sys
import textwrap

import pytest
from sandbox_helpers import backend_or_skip, config

from selfloop.config import JudgeConfig
from selfloop.errors import ConfigError
from selfloop.judge import Candidate, Judge, JudgeContext, Pipeline, accept, registry, reject
from selfloop.records import TaskRecord
from selfloop.sandbox import Sandbox

ARITH = TaskRecord(
    id="a1",
    family="arith",
    difficulty=0,
    prompt="What is 2+2?",
    checker="def check(answer):\n    return answer.strip() == '4'\n",
)
EXACT = TaskRecord(id="a2", family="arith", difficulty=0, prompt="What is 3+3?", answer="6")
FUNC = TaskRecord(
    id="f1",
    family="functions",
    difficulty=1,
    prompt="Write add(a, b).",
    tests="assert add(1, 2) == 3\ndef test_neg():\n    assert add(-2, 2) == 0\n",
)


@pytest.fixture(scope="module")
def sandbox():
    cfg = config(backend="bwrap", pool_size=2, timeout_s=3.0)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        yield sb


def pipeline(sandbox, **judge_cfg) -> Pipeline:
    return Pipeline(
        JudgeContext(JudgeConfig(**{"python": ["python"], "task": ["task"], **judge_cfg}), sandbox=sandbox),
        kinds=["python", "task"],
    )


GOOD_PY = 'def double(x):\n    """\n    >>> double(4)\n    8\n    """\n    return 2 * x\n'
PY_CASES = [
    ("doctested", Candidate("python", GOOD_PY), True, None),
    ("wrong_doctest", Candidate("python", GOOD_PY.replace("8\n", "9\n")), False, "fail"),
    ("syntax_error", Candidate("python", "def f(:\n    pass\n"), False, "error"),
    ("crashes_on_run", Candidate("python", "raise SystemExit(2)\n"), False, "error"),
    ("blocks_on_input", Candidate("python", "x = input()\n"), False, "error"),
    (
        "with_tests",
        Candidate("python", "def add(a, b):\n    return a + b\n", metadata={"tests": "assert add(2, 3) == 5\n"}),
        True,
        None,
    ),
    (
        "failing_tests",
        Candidate("python", "def add(a, b):\n    return a - b\n", metadata={"tests": "assert add(2, 3) == 5\n"}),
        False,
        "fail",
    ),
    ("empty", Candidate("python", "   \n"), False, None),
]


@pytest.mark.parametrize("name, cand, ok, status", PY_CASES, ids=[c[0] for c in PY_CASES])
def test_python_judge(sandbox, name, cand, ok, status):
    outcome = pipeline(sandbox).judge(cand)
    assert outcome.accepted is ok, outcome.reason
    (v,) = outcome.verdicts
    assert v.judge == "python" and v.reason
    if status:
        assert v.detail["sandbox_status"] == status and v.detail["backend"] == "bwrap"
    if ok:
        assert v.score == 1.0 and v.detail["checks_run"] >= 2


def test_python_require_tests(sandbox):
    p = pipeline(sandbox, python_require_tests=True)
    assert not p.judge(Candidate("python", "x = 1\n")).accepted
    assert p.judge(Candidate("python", GOOD_PY)).accepted


TASK_CASES = [
    ("checker_right", Candidate("task", " 4\n", task=ARITH), True),
    ("checker_wrong", Candidate("task", "5", task=ARITH), False),
    ("exact_right", Candidate("task", "6", task=EXACT), True),
    ("exact_wrong", Candidate("task", "six", task=EXACT), False),
    ("program_stdout", Candidate("task", "print(2 + 2)", task=ARITH, metadata={"answer_kind": "program"}), True),
    (
        "program_wrong",
        Candidate("task", "print(5)", task=ARITH.model_dump(), metadata={"answer_kind": "program"}),
        False,
    ),
    (
        "program_exits_early",
        Candidate("task", "import os\nos._exit(0)\nprint(4)", task=ARITH, metadata={"answer_kind": "program"}),
        False,
    ),
    ("tests_fenced", Candidate("task", "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n", task=FUNC), True),
    ("tests_wrong", Candidate("task", "def add(a, b):\n    return a * b\n", task=FUNC), False),
    (
        "tests_lying_eq",
        Candidate(
            "task",
            "class Yes:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return Yes()\n",
            task=FUNC,
        ),
        False,
    ),
    ("no_task", Candidate("task", "4"), False),
    ("bad_answer_kind", Candidate("task", "4", task=ARITH, metadata={"answer_kind": "vibes"}), False),
]


@pytest.mark.parametrize("name, cand, ok", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_task_judge(sandbox, name, cand, ok):
    outcome = pipeline(sandbox).judge(cand)
    assert outcome.accepted is ok, outcome.reason
    assert outcome.verdicts[0].judge == "task"


def test_batch_keeps_order_across_kinds(sandbox):
    cands = [
        Candidate("task", "4", task=ARITH),
        Candidate("python", "def f(:"),
        Candidate("task", "3", task=ARITH),
        Candidate("python", GOOD_PY),
    ]
    assert [o.accepted for o in pipeline(sandbox).judge_batch(cands)] == [True, False, False, True]


class Counting(Judge):
    calls: list[str] = []

    def judge(self, candidate):
        Counting.calls.append(self.name)
        if candidate.content == "bad":
            return reject(self.name, "contains bad", 0.0)
        return accept(self.name, "fine", 1.0)


def test_pipeline_stops_at_first_reject():
    first = type("First", (Counting,), {"name": "first"})
    second = type("Second", (Counting,), {"name": "second"})
    registry.register("first", first)
    registry.register("second", second)
    try:
        Counting.calls.clear()
        p = Pipeline(JudgeContext(JudgeConfig(text=["first", "second"])), kinds=["text"])
        good, bad = p.judge_batch([Candidate("text", "good"), Candidate("text", "bad")])
        assert good.accepted and [v.judge for v in good.verdicts] == ["first", "second"]
        assert not bad.accepted and [v.judge for v in bad.verdicts] == ["first"] and bad.reason == "first: contains bad"
        assert Counting.calls.count("second") == 1
    finally:
        registry.unregister("first")
        registry.unregister("second")


def test_unknown_judge_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown judge 'nope'.*python.*selfloop.judges"):
        Pipeline(JudgeContext(JudgeConfig(text=["nope"])), kinds=["text"])


def test_sandboxed_judge_without_sandbox_says_so():
    from selfloop.errors import SelfloopError

    p = Pipeline(JudgeContext(JudgeConfig(python=["python"])), kinds=["python"])
    with pytest.raises(SelfloopError, match="needs a sandbox"):
        p.judge(Candidate("python", "x = 1"))


def test_third_party_judge_via_entry_point(tmp_path, monkeypatch):
    """A distribution on sys.path declaring a `selfloop.judges` entry point is found by name."""
    (tmp_path / "simenv.py").write_text(
        textwrap.dedent("""
        from selfloop.judge import Judge, accept, reject

        class SimEnvJudge(Judge):
            name = "simenv"

            def judge(self, candidate):
                # A scripted environment: the candidate must say the magic word.
                if "open sesame" in candidate.content:
                    return accept(self.name, "solved", 1.0)
                return reject(self.name, "door stays shut", 0.0)
    """)
    )
    dist = tmp_path / "simenv-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: simenv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[selfloop.judges]\nsimenv = simenv:SimEnvJudge\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "simenv" in registry.available()
    p = Pipeline(JudgeContext(JudgeConfig(chat=["simenv"])), kinds=["chat"])
    assert p.judge(Candidate("chat", "open sesame")).accepted
    assert p.judge(Candidate("chat", "please")).reason == "simenv: door stays shut"
    sys.modules.pop("simenv", None)
