"""The solve strategy: drafts, judging in a real sandbox, rework records with provenance,
preference pairs, and STaR rationalization -- with real files, store and sandbox."""

from __future__ import annotations

import json
import random

import pytest
from lifecycle_helpers import make_project
from sandbox_helpers import judge_sources

from selfloop.config import ReworkConfig, TasksConfig
from selfloop.ingest.ingestor import Ingestor
from selfloop.records import TaskRecord
from selfloop.rework import solve
from selfloop.rework.phase import run_judge, store_drafts
from selfloop.store import Store
from selfloop.tasks.families import FAMILIES, is_heldout
from selfloop.train.suite import build_items

FRACTION = 0.1
SETTINGS = {
    "rework": {"enabled": True, "rewrite_share": 0.0, "synthesize_share": 0.0, "solve_share": 1.0},
    "sandbox": {"pool_size": 2, "timeout_s": 5},
}


@pytest.fixture
def project(tmp_path):
    config_path, cfg, paths = make_project(tmp_path, SETTINGS)
    with Store.open(paths.db) as store:
        yield cfg, paths, store


def sources(cfg, model=None, tokenizer=None):
    return judge_sources("bwrap", model, tokenizer)


def right_and_wrong(ask: solve.Ask, cfg: TasksConfig) -> tuple[str, str]:
    gen = FAMILIES[ask.task.family]
    right = gen.target(gen.labelled(ask.task), ask.mode, cfg.digit_format)
    return right, ("print('nope')" if ask.mode == "program" else right + " 1")


def test_draft_keeps_the_unhinted_exchange_and_what_the_judge_checks():
    cfg = TasksConfig()
    task = FAMILIES["addition"].make(3, random.Random(0))
    ask = solve.Ask(task, (), "answer", FAMILIES["addition"].render(task, "answer", "reversed"), hint="\nhint: 1 2 3")
    d = solve.draft(ask, " 3 2 1 \n", cfg)
    assert d.kind == "task" and d.strategy == "solve" and d.prompt.endswith("hint: 1 2 3")
    assert json.loads(d.content)["messages"] == [
        {"role": "user", "content": ask.prompt},
        {"role": "assistant", "content": "3 2 1"},
    ]
    assert d.meta["answer"] == "123" and d.meta["rationalized"] and d.meta["task"]["id"] == task.id


def test_solved_answers_are_judged_in_the_sandbox_and_only_correct_ones_train(project):
    cfg, paths, store = project
    asks = solve.plan_asks(cfg.tasks, {"addition": 3, "reverse": 3}, [], 12, random.Random(1), FRACTION)
    assert {a.mode for a in asks} == {"answer", "program"} and len(asks) == 12
    drafts = []
    for ask in asks:
        right, wrong = right_and_wrong(ask, cfg.tasks)
        drafts += [solve.draft(ask, right, cfg.tasks), solve.draft(ask, wrong, cfg.tasks)]
    assert store_drafts(store, 1, 0, drafts) == 24
    model_source, sandbox_source = sources(cfg)
    out = run_judge(cfg, paths, store, 1, model_source, sandbox_source)
    # print('nope') uses no input, but it is wrong before it is hard-coded: rejected for failing
    assert out["accepted"] == 12 and out["counts"]["rejected:task/fail"] == 12
    assert "solve" not in out["diversity"]  # the collapse guard is for free text, not verified answers
    accepted = store.query("SELECT content FROM candidates WHERE status = 'accepted'")
    assert {r["content"] for r in accepted} == {d.content for d in drafts[::2]}
    records = [
        json.loads(line) for f in (paths.rework / "tasks").rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    assert len(records) == 12
    # The cycle's preference pairs, in TRL's format, beside them.
    [pairs_file] = (paths.rework / "pairs").rglob("task-c*.jsonl")
    assert len(pairs_file.read_text().splitlines()) == 12
    for r in records:
        # A self-labelled task record: the model's answer or program as its worked answer, with provenance.
        task = TaskRecord.model_validate(r)
        prov = task.provenance
        assert (
            prov["strategy"] == "solve"
            and not prov["rationalized"]
            and [v["judge"] for v in json.loads(prov["verdicts"])] == ["task"]
        )
        assert (task.answer is not None) == (prov["answer_kind"] == "answer") and (task.solution is not None) == (
            prov["answer_kind"] == "program"
        )
        assert not is_heldout(task, FRACTION)
    # Ingested as task documents (never through the prose filters); they train as chat exchanges.
    docs = store.query("SELECT kind, content FROM documents WHERE origin = 'rework' AND status = 'active'")
    assert len(docs) == 12 and {d["kind"] for d in docs} == {"task"}
    from selfloop.store.corpus import load_documents
    from selfloop.tasks.training import training_docs

    trained = training_docs(load_documents(store, split="train", origin="rework"), cfg.tasks)
    assert {json.loads(d.content)["messages"][1]["content"] for d in trained} == {
        json.loads(d.content)["messages"][1]["content"] for d in drafts[::2]
    }
    pairs = store.query("SELECT prompt, chosen, rejected FROM pairs WHERE source = 'task'")
    assert len(pairs) == 12 and all(p["chosen"] != p["rejected"] for p in pairs)
    # A second judge run (a resumed phase) adds nothing.
    run_judge(cfg, paths, store, 1, model_source, sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM pairs") == 12
    assert store.scalar("SELECT COUNT(*) FROM documents WHERE origin = 'rework'") == 12


def test_no_held_out_task_reaches_rework(project):
    cfg, paths, store = project
    heldout = {(i.task.family, i.task.id) for i in build_items(cfg.tasks, FRACTION)}
    for level in range(1, cfg.tasks.max_difficulty + 1):
        for ask in solve.plan_asks(
            cfg.tasks, {"addition": level, "reverse": level}, [], 64, random.Random(level), FRACTION
        ):
            assert (ask.task.family, ask.task.id) not in heldout and not is_heldout(ask.task, FRACTION)


def test_corpus_tasks_are_solved_only_where_they_have_no_worked_answer(project):
    cfg, paths, store = project
    (paths.orig / "t.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "sq", "family": "squares", "difficulty": 1, "prompt": "What is 7 squared?", "answer": "49"},
                {
                    "id": "dbl",
                    "family": "functions",
                    "difficulty": 1,
                    "prompt": "Write double(x).",
                    "tests": "assert double(3) == 6\n",
                    "solution": "def double(x):\n    return 2 * x\n",
                },
            ]
        )
        + "\n"
    )
    Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
    corpus = solve.corpus_tasks(store)
    # "dbl" falls in the held-out split (by its family/difficulty/id key): it is never solved for training.
    assert [t.id for _, t in corpus] == ["sq"]
    asks = solve.plan_asks(TasksConfig(families=[]), {}, corpus, 10, random.Random(0), FRACTION)
    # "sq" has its answer (the direct mode trains already) but no program: only the program is asked for.
    assert [(a.task.id, a.mode) for a in asks] == [("sq", "program")]


@pytest.mark.slow
def test_unsolved_tasks_with_an_answer_are_retried_with_a_hint(project):
    """An untrained model solves nothing; the task with a reference answer is retried with it as a hint."""
    import torch

    from selfloop.model.factory import build_scratch_model
    from selfloop.model.tokenizer import train_tokenizer

    cfg, paths, store = project
    task = TaskRecord(
        id="sq7",
        family="squares",
        difficulty=1,
        prompt="What is 7 squared?",
        answer="49",
        checker="def check(answer):\n    return answer.strip() == '49'\n",
    )
    tok = train_tokenizer(["What is 7 squared? 49", "print(7 ** 2)"] * 10, 300, max_length=64)
    torch.manual_seed(0)
    model = build_scratch_model(cfg.model, tok)
    tasks_cfg = TasksConfig(families=[], samples_per_task=2, max_new_tokens=6)
    ask = solve.Ask(task, (), "answer", task.prompt)
    drafts, _ = solve.sample([ask], tasks_cfg, ReworkConfig(), model, tok, seed=0)
    store_drafts(store, 1, 0, drafts)
    cfg = cfg.model_copy(update={"tasks": tasks_cfg})
    model_source, sandbox_source = sources(cfg, model, tok)
    run_judge(cfg, paths, store, 1, model_source, sandbox_source)
    retried = store.query(
        "SELECT status, prompt, content, meta FROM candidates WHERE json_extract(meta, '$.rationalized')"
    )
    assert len(retried) == 2
    for r in retried:
        assert r["prompt"] == "What is 7 squared?\nhint: 49"
        assert json.loads(r["content"])["messages"][0]["content"] == "What is 7 squared?"  # trains without the hint
        assert r["status"] in ("accepted", "rejected")
    # A second judge run (resumed) does not retry again.
    run_judge(cfg, paths, store, 1, model_source, sandbox_source)
    assert store.scalar("SELECT COUNT(*) FROM candidates") == 4


def test_a_hinted_program_that_prints_the_hint_is_not_kept():
    cfg = TasksConfig()
    task = TaskRecord(id="sq7", family="squares", difficulty=1, prompt="What is 7 squared?", answer="49")
    ask = solve.Ask(task, (), "program", "program: What is 7 squared?", hint="\nhint: it prints 49")
    assert solve.copies_hint(solve.draft(ask, "print(49)", cfg))
    assert not solve.copies_hint(solve.draft(ask, "print(7 ** 2)", cfg))
    assert not solve.copies_hint(solve.draft(solve.Ask(task, (), "program", ask.prompt), "print(49)", cfg))
