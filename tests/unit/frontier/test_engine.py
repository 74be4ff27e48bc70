"""The frontier model and one arm's rounds, at tiny sizes (mechanics only: accuracy means nothing here)."""

import random

import pytest
import torch

from selfloop.config import FrontierConfig
from selfloop.frontier import engine
from selfloop.frontier.families import Addition
from selfloop.frontier.grow import Grower, arms
from selfloop.testing import TINY_FRONTIER


def test_one_token_per_character_digits_never_merge():
    tok = engine.build_tokenizer(Addition().alphabet)
    assert tok.tokenize("12345+678=") == list("12345+678=")
    assert len(tok) == 2 + len(set(Addition().alphabet))


def test_nope_has_no_position_signal_even_after_training():
    torch.manual_seed(0)
    grower = Grower(FrontierConfig(**TINY_FRONTIER), Addition(), arms(FrontierConfig())["self"], seed=0)
    grower.generation0()
    wpe = grower.model.transformer.wpe.weight
    assert not wpe.requires_grad and torch.count_nonzero(wpe) == 0


def test_offset_mode_draws_positions_inside_the_table():
    collate = engine.Collator(pad_id=0, position="offset", n_positions=16, seed=0)
    batch = collate([{"input_ids": [3, 4, 5], "labels": [-100, 4, 5]}, {"input_ids": [3], "labels": [3]}])
    pos = batch["position_ids"]
    assert pos.shape == (2, 3) and int(pos.max()) < 16
    assert torch.equal(pos[:, 1:] - pos[:, :-1], torch.ones(2, 2, dtype=torch.long))
    assert batch["labels"][1].tolist() == [3, -100, -100]


def test_control_differs_from_self_only_in_the_label_slot():
    cfg = FrontierConfig(**TINY_FRONTIER)
    runs = {}
    for name in ("self", "control"):
        grower = Grower(cfg, Addition(), arms(cfg)[name], seed=3)
        grower.generation0()
        records = [grower.round() for _ in range(2)]
        steps = {int(s["step"]) for s in grower.optimizer.state.values()}
        runs[name] = (grower, records, steps)
    (own, own_rec, own_steps), (ctl, ctl_rec, ctl_steps) = runs["self"], runs["control"]
    assert own_steps == ctl_steps == {cfg.gen0_steps + 2 * cfg.round_steps}  # same optimizer steps, carried over
    assert [r["steps"] for r in own_rec] == [r["steps"] for r in ctl_rec]
    assert all("labels" in r for r in own_rec) and not any("labels" in r for r in ctl_rec)
    assert ctl.mixture.rounds == [[], []]  # the control's newest slot is always refilled from the labelled range
    assert len(own.mixture.rounds) == 2


def test_greedy_answers_come_back_per_prompt_in_order():
    cfg = FrontierConfig(**TINY_FRONTIER)
    grower = Grower(cfg, Addition(), arms(cfg)["self"], seed=0)
    rng = random.Random(0)
    prompts = [Addition().prompt(Addition().sample(lv, rng)) for lv in (1, 3, 2, 1, 3)]
    answers = grower.solver().greedy(prompts)
    assert len(answers) == 5 and all(isinstance(a, str) for a in answers)
    assert grower.solver().greedy(prompts) == answers  # greedy is deterministic
    assert [len(s) for s in grower.solver().sample(prompts, 3, 1.0, seed=1)] == [3] * 5


def test_program_batches_are_whole_batches_of_one_kind():
    tok = engine.build_tokenizer(Addition().alphabet)
    stream = engine.ExampleStream(
        lambda rng: ("12+34=", "460"),
        tok,
        seed=0,
        programs=lambda rng: ("12+34?", Addition().program((21, 43))),
        program_share=0.5,
        batch_size=4,
    )
    it = iter(stream)
    batches = [[len(next(it)["input_ids"]) for _ in range(4)] for _ in range(40)]
    assert all(len(set(b)) == 1 for b in batches)  # never a short answer padded to a program's length
    assert 5 < sum(b[0] > 10 for b in batches) < 35


def test_tool_arm_trains_answers_and_programs_with_the_control_s_steps():
    from selfloop.config import SandboxConfig
    from selfloop.frontier.label import Label
    from selfloop.frontier.tool import SandboxRunner
    from selfloop.sandbox import Sandbox

    cfg = FrontierConfig(**TINY_FRONTIER)
    with Sandbox(SandboxConfig(backend="process")) as sandbox:
        tool = Grower(cfg, Addition(), arms(cfg)["tool"], seed=3, runner=SandboxRunner(sandbox))
        tool.generation0()
        record = tool.round()
    assert record["labels"]["source"] == "tool" and record["kept_by_source"] == {"tool": record["labels"]["kept"]}
    assert {int(s["step"]) for s in tool.optimizer.state.values()} == {cfg.gen0_steps + cfg.round_steps}
    problem = (123, 456)
    program = Addition().program(problem)
    kept = [Label("addition", problem, "321+654=", "9750", "tool", 3, True, program, "321+654?")]
    tool.train_round(kept, {"round": 2, "level": 3, "label_seconds": 0.0})
    assert tool.mixture.rounds[-1] == [("321+654=", "9750")]
    assert tool.programs.rounds[-1] == [("321+654?", program)]


def test_the_tool_source_needs_programs():
    cfg = FrontierConfig(**{**TINY_FRONTIER, "program_share": 0.0})
    with pytest.raises(ValueError, match="program_share"):
        Grower(cfg, Addition(), arms(cfg)["tool"], seed=0)
