"""Preference training: DPO (TRL) on the eval space's chosen / rejected pairs.

Covers: whether the step runs (``preference_enabled``), which stored pairs are used (``select_pairs``), the pairs
snapshot in the run dir, TRL's text format (``as_text_pairs``), the DPO run (``train_dpo``, inside the training
child after SFT, in the same run dir) and the chosen-over-rejected log-probability margin (``margin``).

Does not cover: making pairs (``selfloop.rework``), SFT (``selfloop.train.run``), the promotion decision
(``selfloop.train.gate``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfloop.config import PreferenceConfig
from selfloop.errors import SelfloopError
from selfloop.model.score import continuation_nll
from selfloop.store import Store
from selfloop.store.candidates import preference_pairs
from selfloop.train.rundir import last_complete_checkpoint


def preference_enabled(cfg: PreferenceConfig, cuda_available: bool) -> bool:
    """Whether the DPO step runs: explicitly on or off, or "auto" = only where a GPU makes it cheap."""
    return cuda_available if cfg.enabled == "auto" else bool(cfg.enabled)


def select_pairs(store: Store, cfg: PreferenceConfig) -> list[dict[str, str]]:
    """The pairs one run trains on: from ``cfg.sources``, newest first, ``share`` of them, at most ``max_pairs``."""
    rows = preference_pairs(store, cfg.sources)
    keep = min(cfg.max_pairs, max(1, round(len(rows) * cfg.share))) if rows else 0
    return [{k: r[k] for k in ("prompt", "chosen", "rejected", "source")} for r in rows[:keep]]


def write_pairs(path: Path, pairs: Sequence[dict[str, str]]) -> None:
    """The pairs snapshot of a run, written whole (a resumed run trains on the same pairs)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_pairs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def as_text_pairs(pairs: Sequence[dict[str, str]], tokenizer) -> list[dict[str, str]]:
    """TRL's standard (text) preference format; task prompts go through the chat template first.

    Pair formats as stored: an ``a_vs_b`` pair's prompt is exactly the text the model
    continued (chat prompts already rendered); a ``task`` pair's prompt is the user's
    message, rendered here with the tokenizer's chat template so that both kinds train
    the way the model is sampled.
    """
    out = []
    for p in pairs:
        if p["source"] == "task":
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True
            )
            # The template's end of the assistant turn, as in sampling (the prefix is the prompt itself).
            chosen, rejected = (
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": answer}],
                    tokenize=False,
                )[len(prompt) :]
                for answer in (p["chosen"], p["rejected"])
            )
        else:
            prompt, chosen, rejected = p["prompt"], p["chosen"], p["rejected"]
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def margin(model, tokenizer, text_pairs: Sequence[dict[str, str]]) -> float:
    """Mean over pairs of log p(chosen | prompt) - log p(rejected | prompt), per token (nats)."""
    model.eval()  # no dropout in the measurement (the Trainer switches back to train mode itself)
    prompts = [p["prompt"] for p in text_pairs]
    chosen = continuation_nll(model, tokenizer, prompts, [p["chosen"] for p in text_pairs])
    rejected = continuation_nll(model, tokenizer, prompts, [p["rejected"] for p in text_pairs])
    return sum(r - c for c, r in zip(chosen, rejected)) / len(text_pairs)


def train_dpo(
    model,
    ref_model,
    tokenizer,
    pairs: Sequence[dict[str, str]],
    cfg: PreferenceConfig,
    out_dir: Path,
    *,
    max_length: int,
    seed: int,
    callbacks: Sequence[Any] = (),
    use_cpu: bool = True,
    report_to: str | list[str] = "none",
) -> dict[str, Any]:
    """DPO on ``pairs`` starting from ``model`` against the frozen ``ref_model``; returns its figures.

    ``ref_model`` is the SFT model as it was before DPO: passed in (not left to
    TRL, which reloads it from a hub id or precomputes it from the policy) so a
    resumed run compares against the same reference. Resumes from the last
    complete checkpoint in ``out_dir/checkpoints``; ``model`` is trained in place.

    Why inside the training child, after SFT, in the same run dir (and not a child run
    of its own): the challenger of a cycle is one generation; SFT and DPO are two stages
    of producing it, and the gate judges only what both produced. One process keeps one
    launcher, one ``result.json`` contract with the parent and one SIGTERM/resume story:
    SFT's output is kept in ``RUNDIR/sft`` once complete, so a resumed run skips SFT and
    DPO resumes from its own checkpoints in ``RUNDIR/preference``.
    """
    try:
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        raise SelfloopError(
            "train.preference is enabled but TRL is not installed: pip install 'selfloop[preference]' "
            "(or set [train.preference] enabled = false)"
        ) from e
    from datasets import Dataset

    text_pairs = as_text_pairs(pairs, tokenizer)
    if not text_pairs:
        raise SelfloopError("preference training needs at least one pair")
    args = DPOConfig(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        beta=cfg.beta,
        max_length=max_length,
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, cfg.steps // 10),
        save_strategy="steps",
        save_steps=max(1, cfg.steps // 2),
        save_total_limit=1,
        report_to=report_to,
        disable_tqdm=True,
        log_level="warning",
        use_cpu=use_cpu,
        dataloader_num_workers=0,
    )
    before = margin(model, tokenizer, text_pairs)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(text_pairs),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    last = last_complete_checkpoint(Path(args.output_dir))
    output = trainer.train(resume_from_checkpoint=last)
    return {
        "pairs": len(text_pairs),
        "global_step": trainer.state.global_step,
        "train_loss": output.training_loss,
        "resumed_from": last,
        "margin_before": before,
        "margin_after": margin(trainer.model, tokenizer, text_pairs),
    }
