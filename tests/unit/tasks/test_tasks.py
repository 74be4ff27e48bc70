"""Task packs: records, families and formats, the starter pack, the held-out suite judged in a
real sandbox, the curriculum rule and its stored levels, and the held-out / training separation."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager

import pytest
from pydantic import ValidationError
from sandbox_helpers import backend_or_skip, config

from selfloop.cli.project import starter_corpus
from selfloop.config import JudgeConfig, TasksConfig, parse_config
from selfloop.errors import ConfigError
from selfloop.judge import Candidate, JudgeContext, Pipeline
from selfloop.records import Doc, TaskRecord
from selfloop.sandbox import Sandbox
from selfloop.store import Store
from selfloop.tasks import curriculum
from selfloop.tasks.families import (
    FAMILIES,
    conversations,
    heldout_set,
    is_heldout,
    problems,
)
from selfloop.tasks.pack import starter_pack
from selfloop.tasks.training import heldout_loss_docs, training_docs
from selfloop.train.suite import TaskSuite, build_items, frontier, summarize

PACK = starter_corpus() / "orig" / "tasks" / "starter.jsonl"
FRACTION = 0.1


@pytest.fixture(scope="module")
def sandbox():
    cfg = config(backend="bwrap", pool_size=2, timeout_s=3.0)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        yield sb


def judge(sandbox, candidates):
    return Pipeline(JudgeContext(JudgeConfig(), sandbox=sandbox), kinds=["task"]).judge_batch(candidates)


# --------------------------------------------------------------------------- records and families


def test_task_records_are_validated():
    with pytest.raises(ValidationError, match="at least one of checker, tests or answer"):
        TaskRecord(id="x", family="f", difficulty=1, prompt="p")
    with pytest.raises(ValidationError):
        TaskRecord(id="x", family="f", difficulty=-1, prompt="p", answer="1")
    with pytest.raises(ValidationError):
        TaskRecord(id="x", family="f", difficulty=1, prompt="p", answer="1", secret="leak")


def test_tasks_config_names_unknown_families():
    with pytest.raises(ConfigError, match="unknown task families"):
        parse_config({"tasks": {"families": ["addition", "calculus"]}}, env=False)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("digit_format", ["reversed", "plain"])
def test_formats_round_trip(family, digit_format):
    """What a labelled task trains on decodes back to its reference answer, in every format."""
    gen = FAMILIES[family]
    rng = random.Random(1)
    for difficulty in (1, 3, 6):
        task = gen.labelled(gen.make(difficulty, rng))
        (direct, program) = conversations(task, ["answer", "program"], digit_format)
        assert gen.decode(task, direct[1]["content"], "answer", digit_format) == task.answer
        assert program[0]["content"].startswith("program: ") and program[1]["content"] == task.solution
        assert direct[0]["content"] != program[0]["content"]


def test_reversed_digits_are_spaced_least_significant_first():
    task = FAMILIES["addition"].labelled(
        TaskRecord(id="374+99", family="addition", difficulty=3, prompt="374 + 99", answer="0")
    )
    assert FAMILIES["addition"].render(task, "answer", "reversed") == "4 7 3 + 9 9 ="
    assert FAMILIES["addition"].target(task, "answer", "reversed") == "3 7 4"
    assert FAMILIES["addition"].decode(task, " 3 7 4", "answer", "reversed") == "473"


def test_generated_problems_have_the_difficulty_asked_and_no_answer():
    rng = random.Random(0)
    for d in range(1, 7):
        for task in problems("addition", d, rng, 5, heldout_fraction=FRACTION, heldout=False):
            a, b = (int(x) for x in task.prompt.split("+"))
            assert max(len(str(a)), len(str(b))) == d and task.answer is None and task.checker
        for task in problems("reverse", d, rng, 5, heldout_fraction=FRACTION, heldout=False):
            assert len(task.id) == d and task.answer is None


# --------------------------------------------------------------------------- the starter pack


def test_starter_pack_file_is_the_built_pack_and_all_labelled():
    lines = PACK.read_text().splitlines()
    records = [TaskRecord.model_validate_json(line) for line in lines]
    assert [r.canonical_json() for r in records] == [r.canonical_json() for r in starter_pack()]
    assert {r.family for r in records} >= {"addition", "reverse"}
    assert all(r.answer is not None and r.solution is not None and r.checker for r in records)
    assert not any(is_heldout(r, FRACTION) for r in records)


# --------------------------------------------------------------------------- checkers in the sandbox


def test_checkers_accept_right_answers_and_never_wrong_ones(sandbox):
    rng = random.Random(7)
    cases = []
    for family, gen in FAMILIES.items():
        for d in (1, 2, 5):
            task = gen.make(d, rng)
            right = gen.labelled(task).answer
            wrong = right[:-1] + ("0" if right[-1] != "0" else "1") if family == "addition" else right[::-1] + "x"
            cases += [
                (task, right, "answer", True),
                (task, wrong, "answer", False),
                (task, "", "answer", False),
                (task, gen.labelled(task).solution, "program", True),
                (task, f"print({wrong!r})", "program", False),
            ]
    outcomes = judge(sandbox, [Candidate("task", a, task=t, metadata={"answer_kind": m}) for t, a, m, _ in cases])
    assert [o.accepted for o in outcomes] == [ok for *_, ok in cases], [o.reason for o in outcomes]


FUNC = TaskRecord(
    id="dbl",
    family="functions",
    difficulty=1,
    prompt="Write double(x).",
    tests="assert double(2) == 4\ndef test_neg():\n    assert double(-3) == -6\n",
)
ADD = TaskRecord(
    id="17+25",
    family="addition",
    difficulty=2,
    prompt="17 + 25",
    checker="def check(answer):\n    return answer.strip() == str(17 + 25)\n",
)
LIES = [
    ("prints a pass verdict without running tests", FUNC, 'print("all tests passed")\n'),
    ("exits before the tests run", FUNC, "import os\nos._exit(0)\ndef double(x):\n    return 2 * x\n"),
    ("exits cleanly before the tests run", FUNC, "import sys\nsys.exit(0)\n"),
    (
        "forges a harness result line",
        FUNC,
        'print(\'{"nonce": "x", "status": "pass", "checks_run": 2, "checks_passed": 2}\')\n',
    ),
    ("exits before printing its answer", ADD, "import os\nos._exit(0)\nprint(17 + 25)\n"),
    (
        "prints a forged result instead of the answer",
        ADD,
        'print(\'{"status": "pass", "checks_run": 1, "checks_passed": 1}\')\n',
    ),
]


@pytest.mark.parametrize("why, task, program", LIES, ids=[c[0] for c in LIES])
def test_a_lying_program_is_caught(sandbox, why, task, program):
    (outcome,) = judge(sandbox, [Candidate("task", program, task=task, metadata={"answer_kind": "program"})])
    assert not outcome.accepted, why


def test_an_honest_program_passes_the_same_tasks(sandbox):
    outcomes = judge(
        sandbox,
        [
            Candidate("task", "def double(x):\n    return 2 * x\n", task=FUNC, metadata={"answer_kind": "program"}),
            Candidate("task", "print(17 + 25)\n", task=ADD, metadata={"answer_kind": "program"}),
        ],
    )
    assert all(o.accepted for o in outcomes)


# --------------------------------------------------------------------------- the suite


class Oracle(TaskSuite):
    """A 'model' that answers every direct question right and writes a broken program at difficulty 2."""

    def answers(self, model, tokenizer):
        out = []
        for item in self.items:
            gen = FAMILIES[item.task.family]
            labelled = gen.labelled(item.task)
            if item.mode == "answer":
                out.append(labelled.answer)
            else:
                out.append("print(" if item.task.difficulty == 2 else labelled.solution)
        return out


def test_suite_judges_every_item_in_the_sandbox_per_family_difficulty_and_mode(sandbox):
    cfg = TasksConfig(max_difficulty=3, heldout_per_level=3)

    @contextmanager
    def source():
        yield sandbox

    suite = Oracle(cfg, JudgeConfig(), source, heldout_fraction=FRACTION)
    model = object()
    by_family = suite(model, None)
    detail = suite.detail(model)
    for family in ("addition", "reverse"):
        assert [detail[family][d]["answer"]["pass_at_1"] for d in ("1", "2", "3")] == [1.0, 1.0, 1.0]
        assert [detail[family][d]["program"]["pass_at_1"] for d in ("1", "2", "3")] == [1.0, 0.0, 1.0]
        cells = [m for d in detail[family].values() for m in d.values()]
        assert by_family[family] == pytest.approx(
            sum(c["pass_at_1"] * c["n"] for c in cells) / sum(c["n"] for c in cells)
        )
        assert 0.5 < by_family[family] < 1
    assert frontier(detail, "program") == {
        "addition": 3,
        "reverse": 3,
    }  # the largest difficulty at >= 0.9, gaps and all
    assert frontier(detail, "answer") == {"addition": 3, "reverse": 3}


def test_suite_items_are_fixed_held_out_tasks():
    cfg = TasksConfig(max_difficulty=4, heldout_per_level=8)
    a, b = build_items(cfg, FRACTION), build_items(cfg, FRACTION)
    assert [(i.task.id, i.mode) for i in a] == [(i.task.id, i.mode) for i in b]
    assert all(is_heldout(i.task, FRACTION) for i in a)
    counts = {(i.task.family, i.task.difficulty) for i in a}
    assert counts == {(f, d) for f in ("addition", "reverse") for d in range(1, 5)}  # every family and difficulty


def test_summarize_is_per_family_difficulty_and_mode():
    cfg = TasksConfig(families=["reverse"], max_difficulty=2, heldout_per_level=2, modes=["answer"])
    items = build_items(cfg, FRACTION)
    result = summarize(items, [True, False, True, True])
    assert result["tasks"] == {"reverse": 0.75}
    assert result["detail"]["reverse"]["1"]["answer"] == {"pass_at_1": 0.5, "n": 2}


# --------------------------------------------------------------------------- held-out never trains


def test_held_out_tasks_never_enter_training():
    cfg = TasksConfig()
    heldout = {(i.task.family, i.task.prompt) for i in build_items(cfg, FRACTION)}
    heldout_prompts = {i.prompt for i in build_items(cfg, FRACTION)}
    # Solve draws (many of them, every level) are train-split only.
    from selfloop.rework.solve import plan_asks

    rng = random.Random(3)
    for level in range(1, cfg.max_difficulty + 1):
        asks = plan_asks(cfg, {f: level for f in cfg.families}, [], 200, rng, FRACTION)
        assert asks and not {(a.task.family, a.task.prompt) for a in asks} & heldout
    # The starter pack's training exchanges contain none of the suite's questions.
    docs = [Doc(i, "orig", "task", t.canonical_json(), 0, "") for i, t in enumerate(starter_pack())]
    trained = {json.loads(d.content)["messages"][0]["content"] for d in training_docs(docs, cfg)}
    assert trained and not trained & heldout_prompts


def test_training_docs_render_labelled_tasks_and_drop_bare_ones():
    cfg = TasksConfig()
    labelled = FAMILIES["addition"].labelled(FAMILIES["addition"].make(2, random.Random(0)))
    bare = FAMILIES["addition"].make(2, random.Random(1))
    text = Doc(9, "orig", "text", "hello", 5, "h")
    out = training_docs(
        [
            Doc(1, "orig", "task", labelled.canonical_json(), 0, ""),
            Doc(2, "orig", "task", bare.canonical_json(), 0, ""),
            text,
        ],
        cfg,
    )
    assert [d.kind for d in out] == ["chat", "chat", "text"] and out[-1] == text
    assert all(d.id == 1 for d in out[:2])
    only_answers = training_docs(
        [Doc(1, "orig", "task", labelled.canonical_json(), 0, "")], TasksConfig(modes=["answer"])
    )
    assert len(only_answers) == 1


def test_heldout_loss_docs_are_the_labelled_suite():
    cfg = TasksConfig(max_difficulty=2, heldout_per_level=3)
    docs = heldout_loss_docs(cfg, FRACTION)
    questions = {json.loads(d.content)["messages"][0]["content"] for d in docs}
    assert questions == {i.prompt for i in build_items(cfg, FRACTION)}


def test_heldout_loss_docs_stop_at_loss_max_difficulty():
    cfg = TasksConfig(max_difficulty=3, heldout_per_level=3, loss_max_difficulty=2)
    questions = {json.loads(d.content)["messages"][0]["content"] for d in heldout_loss_docs(cfg, FRACTION)}
    assert questions == {i.prompt for i in build_items(cfg, FRACTION) if i.task.difficulty <= 2}
    assert {i.task.difficulty for i in build_items(cfg, FRACTION)} == {1, 2, 3}  # pass@1 still measures level 3


def test_held_out_set_is_fixed_and_distinct():
    a = heldout_set("addition", 3, 16, seed=0, heldout_fraction=FRACTION)
    assert [t.id for t in a] == [t.id for t in heldout_set("addition", 3, 16, seed=0, heldout_fraction=FRACTION)]
    assert len({t.id for t in a}) == 16
    assert len(heldout_set("addition", 1, 50, seed=0, heldout_fraction=FRACTION)) < 50  # only 100 one-digit sums exist


# --------------------------------------------------------------------------- curriculum


@pytest.mark.parametrize(
    "level, heldout, labels, expected",
    [
        (3, 0.95, 0.6, 4),  # both good: advance
        (3, 0.85, 0.9, 3),  # held-out below threshold: hold
        (3, 0.95, 0.1, 3),  # labels too inaccurate there: hold
        (3, 0.95, None, 3),  # nothing sampled there yet: hold
        (3, None, 0.9, 3),  # not measured: hold
        (8, 1.0, 1.0, 8),  # at the top
    ],
)
def test_curriculum_advances_only_on_held_out_and_label_accuracy(level, heldout, labels, expected):
    cfg = TasksConfig(advance_threshold=0.9, min_label_accuracy=0.3, max_difficulty=8)
    new, reason = curriculum.decide(level, heldout, labels, cfg)
    assert new == expected and reason


def _solve_row(store, cycle_id, family, difficulty, status, mode="answer", rationalized=False):
    meta = {
        "task": {"family": family, "difficulty": difficulty, "id": "x"},
        "answer_kind": mode,
        "answer": "1",
        "rationalized": rationalized,
    }
    with store.tx() as c:
        c.execute(
            "INSERT INTO candidates (cycle_id, generation, strategy, kind, content, status, meta, created_at) "
            "VALUES (?, 0, 'solve', 'task', '{}', ?, ?, 0)",
            (cycle_id, status, json.dumps(meta)),
        )


def test_curriculum_step_advances_holds_and_persists(tmp_path):
    cfg = TasksConfig(start_level=2, advance_threshold=0.9, min_label_accuracy=0.5)
    with Store.open(tmp_path / "s.db") as store:
        assert curriculum.current_levels(store, cfg) == {"addition": 2, "reverse": 2}
        for status in ("accepted", "accepted", "rejected"):
            _solve_row(store, 1, "addition", 2, status)
            _solve_row(store, 1, "reverse", 2, "rejected")
        _solve_row(store, 1, "reverse", 2, "accepted", rationalized=True)  # hinted retries do not count
        _solve_row(store, 1, "reverse", 2, "accepted", mode="program")  # nor do modes that do not drive it
        detail = {
            "addition": {"2": {"answer": {"pass_at_1": 0.95, "n": 20}}},
            "reverse": {"2": {"answer": {"pass_at_1": 1.0, "n": 20}}},
        }
        steps = {s.family: s for s in curriculum.step(store, cfg, detail, cycle_id=1)}
        assert steps["addition"].new_level == 3 and steps["reverse"].new_level == 2
        assert "label accuracy 0.00" in steps["reverse"].reason
        assert curriculum.load_levels(store) == {"addition": 3, "reverse": 2}
        assert store.scalar("SELECT COUNT(*) FROM events WHERE kind = 'curriculum'") == 1
        # The same cycle's promote phase resumed after a crash: nothing advances twice.
        again = {s.family: s for s in curriculum.step(store, cfg, detail, cycle_id=1)}
        assert again["addition"].new_level == 3 and "already applied" in again["addition"].reason
        assert curriculum.load_levels(store) == {"addition": 3, "reverse": 2}


def test_initial_level_is_one_above_the_labelled_levels():
    assert curriculum.initial_level(TasksConfig(), [1, 2, 3]) == 4
    assert curriculum.initial_level(TasksConfig(), []) == 1
    assert curriculum.initial_level(TasksConfig(start_level=2), [5]) == 2
    assert curriculum.initial_level(TasksConfig(max_difficulty=3), [7]) == 3
