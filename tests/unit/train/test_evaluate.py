"""Held-out evaluation keeps the guard's per-example losses: non-task text and chat, one sum per example."""

from __future__ import annotations

import json

import pytest
import torch
from lifecycle_helpers import chat_record, paragraph

from selfloop.config import ModelConfig, TasksConfig, TrainConfig
from selfloop.model.factory import build_scratch_model
from selfloop.model.tokenizer import train_tokenizer
from selfloop.records import Doc
from selfloop.tasks.training import heldout_loss_docs
from selfloop.testing import TINY_MODEL
from selfloop.train.evaluate import evaluate_model


def doc(i: int, kind: str, content: str) -> Doc:
    return Doc(i, "orig", kind, content, len(content), str(i))


def test_the_guard_has_one_loss_per_non_task_example_and_the_reported_loss_keeps_the_tasks():
    texts = [doc(i, "text", paragraph(i, n=8)) for i in range(6)]
    chats = [doc(10 + i, "chat", json.dumps(chat_record(i))) for i in range(5)]
    tasks = heldout_loss_docs(TasksConfig(families=["addition"], max_difficulty=2, modes=["answer"]), 0.1)
    assert tasks and all(d.kind == "chat" for d in tasks)  # held-out tasks score as chats in their trained format
    tok = train_tokenizer([d.content for d in texts + chats], 320, max_length=64)
    torch.manual_seed(0)
    model = build_scratch_model(ModelConfig(**TINY_MODEL), tok)
    cfg = TrainConfig(batch_size=4, block_size=32, eval_batches=8, eval_samples=0)

    guard = texts + chats
    figures = evaluate_model(model, tok, guard + tasks, cfg, guard_docs=guard)
    text, chat = figures["guard"]["text"], figures["guard"]["chat"]
    assert len(chat["sums"]) == len(chats)  # one example per chat, and no task among them
    assert len(text["sums"]) == len(text["tokens"]) > 1
    assert sum(text["sums"]) / sum(text["tokens"]) == pytest.approx(figures["text_loss"], rel=1e-5)
    assert figures["tokens"]["chat"] > sum(chat["tokens"])  # the reported chat loss also counts the tasks
    alone = evaluate_model(model, tok, guard, cfg, guard_docs=guard)
    assert alone["guard"] == figures["guard"]  # the same examples, the same sums: the gate pairs them
    assert sum(chat["sums"]) / sum(chat["tokens"]) == pytest.approx(alone["chat_loss"], rel=1e-5)
    assert "guard" not in evaluate_model(model, tok, guard, cfg)
