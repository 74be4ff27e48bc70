"""Preference training (DPO): pair selection, formats, and the margin rising on a tiny model."""

from __future__ import annotations

import copy
import time

import pytest

from selfloop import testing
from selfloop.config import ModelConfig, PreferenceConfig
from selfloop.store import Store
from selfloop.train.preference import (
    as_text_pairs,
    margin,
    preference_enabled,
    read_pairs,
    select_pairs,
    train_dpo,
    write_pairs,
)

TINY_MODEL = ModelConfig(**testing.TINY_MODEL)


def _insert_pairs(store: Store, rows: list[tuple[str, str, str, str]]) -> None:
    with store.tx() as c:
        c.executemany(
            "INSERT INTO pairs (cycle_id, prompt, chosen, rejected, source, created_at) VALUES (1, ?, ?, ?, ?, ?)",
            [(*r, time.time()) for r in rows],
        )


def test_enabled_auto_follows_cuda():
    assert preference_enabled(PreferenceConfig(), cuda_available=True)
    assert not preference_enabled(PreferenceConfig(), cuda_available=False)
    assert preference_enabled(PreferenceConfig(enabled=True), cuda_available=False)
    assert not preference_enabled(PreferenceConfig(enabled=False), cuda_available=True)


def test_select_pairs_newest_first_share_cap_and_sources(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        _insert_pairs(store, [(f"p{i}", f"good{i}", f"bad{i}", "a_vs_b" if i % 2 else "task") for i in range(10)])
        _insert_pairs(store, [("same", "x", "x", "task")])  # not a preference: never used
        all_pairs = select_pairs(store, PreferenceConfig())
        assert [p["prompt"] for p in all_pairs] == [f"p{i}" for i in reversed(range(10))]
        assert len(select_pairs(store, PreferenceConfig(share=0.5))) == 5
        assert len(select_pairs(store, PreferenceConfig(max_pairs=3))) == 3
        ab = select_pairs(store, PreferenceConfig(sources=["a_vs_b"]))
        assert {p["source"] for p in ab} == {"a_vs_b"} and len(ab) == 5
        assert select_pairs(store, PreferenceConfig(sources=[])) == []
    write_pairs(tmp_path / "pairs.jsonl", all_pairs)
    assert read_pairs(tmp_path / "pairs.jsonl") == all_pairs
    assert read_pairs(tmp_path / "missing.jsonl") == []


@pytest.fixture(scope="module")
def tiny():
    from transformers import set_seed

    from selfloop.model.factory import build_scratch_model
    from selfloop.model.tokenizer import train_tokenizer

    texts = ["What is 2 plus 3? 5", "What is 4 plus 1? 5", "The cat sees the red ball.", "A dog likes the river."] * 10
    tok = train_tokenizer(texts, TINY_MODEL.vocab_size, max_length=TINY_MODEL.n_positions)
    set_seed(0)
    return build_scratch_model(TINY_MODEL, tok), tok


def test_task_prompts_go_through_the_chat_template(tiny):
    _, tok = tiny
    (task,), (ab,) = (
        as_text_pairs([{"prompt": "What is 2 plus 3?", "chosen": "5", "rejected": "6", "source": "task"}], tok),
        as_text_pairs([{"prompt": "The cat", "chosen": " sees", "rejected": " runs", "source": "a_vs_b"}], tok),
    )
    assert task["prompt"] == tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 3?"}], tokenize=False, add_generation_prompt=True
    )
    assert (
        task["chosen"].startswith("5") and task["rejected"].startswith("6") and task["chosen"] != "5"
    )  # end of turn kept
    assert ab == {"prompt": "The cat", "chosen": " sees", "rejected": " runs"}


@pytest.mark.slow
def test_dpo_raises_the_chosen_margin(tiny, tmp_path):
    model, tok = tiny
    pairs = [
        {"prompt": f"What is {a} plus {b}?", "chosen": str(a + b), "rejected": str(a + b + 1), "source": "task"}
        for a in range(1, 5)
        for b in range(1, 5)
    ]
    pairs += [{"prompt": "The cat sees", "chosen": " the red ball.", "rejected": " the river.", "source": "a_vs_b"}]
    cfg = PreferenceConfig(enabled=True, steps=12, batch_size=8, learning_rate=5e-3, beta=0.1)
    result = train_dpo(model, copy.deepcopy(model), tok, pairs, cfg, tmp_path / "preference", max_length=64, seed=0)
    assert result["global_step"] == 12 and result["pairs"] == len(pairs)
    assert result["margin_after"] > result["margin_before"] + 0.05
    assert result["margin_after"] == pytest.approx(margin(model, tok, as_text_pairs(pairs, tok)))


@pytest.mark.slow
def test_a_cycle_with_preference_on_trains_dpo_after_sft(tmp_path):
    from lifecycle_helpers import fill_corpus, make_project

    from selfloop.loop.cycle import PHASES, run_cycle
    from selfloop.model.registry import Registry

    no_ingest = [p for p in PHASES if p[0] != "ingest"]
    config_path, cfg, paths = make_project(
        tmp_path / "proj",
        {
            "tasks": {"enabled": False},
            "train": {"preference": {"enabled": True, "steps": 4, "batch_size": 4, "learning_rate": 1e-3}},
        },
    )
    with Store.open(paths.db) as store:
        fill_corpus(store)
        gen0 = run_cycle(cfg, paths, store, config_path=config_path, phases=no_ingest)
        assert "preference" not in gen0["phases"]["train"]["out"]  # generation 0: no judged pairs yet
        _insert_pairs(
            store,
            [
                ("The cat sees", " the red ball.", " the river.", "a_vs_b"),
                ("What does a dog see?", "A dog sees the garden.", "garden garden", "task"),
            ]
            * 3,
        )
        detail = run_cycle(cfg, paths, store, config_path=config_path, phases=no_ingest)
    pref = detail["phases"]["train"]["out"]["preference"]
    assert pref["pairs"] == 6 and pref["global_step"] == 4
    train = Registry(paths.models).manifest(1)["train"]
    assert train["global_step"] == 8 and train["preference"]["margin_after"] > train["preference"]["margin_before"]
    assert detail["phases"]["gate"]["out"]["reason"]  # judged like any challenger


@pytest.mark.slow
def test_the_child_resumes_at_the_sft_to_dpo_boundary(tmp_path):
    import shutil

    from lifecycle_helpers import prepared_run

    from selfloop.train.launch import launch_training
    from selfloop.train.rundir import RunDir, RunValues

    config_path, cfg, paths, run_dir = prepared_run(
        tmp_path, {"train": {"preference": {"enabled": True, "steps": 2, "batch_size": 2}}}
    )
    write_pairs(
        run_dir / "pairs.jsonl",
        [{"prompt": "The cat sees", "chosen": " the river.", "rejected": " a dog.", "source": "a_vs_b"}] * 2,
    )

    RunDir(run_dir).write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=4))
    first = launch_training(run_dir)
    assert first["status"] == "done" and first["global_step"] == 4 and first["preference"]["global_step"] == 2
    assert (run_dir / "sft" / "final" / "model.safetensors").is_file() and (
        run_dir / "final" / "model.safetensors"
    ).is_file()
    sft_log = (run_dir / "metrics.jsonl").read_text()
    # As if killed right after SFT finished: only sft/ survives.
    for gone in ("final", "preference", "checkpoints"):
        shutil.rmtree(run_dir / gone)
    (run_dir / "result.json").unlink()
    again = launch_training(run_dir)
    assert again["status"] == "done" and again["preference"]["global_step"] == 2 and again["global_step"] == 4
    assert (run_dir / "metrics.jsonl").read_text() == sft_log  # SFT did not run again
    assert (run_dir / "final" / "model.safetensors").is_file()
