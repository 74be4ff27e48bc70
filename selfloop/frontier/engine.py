"""The frontier model: a one-character-per-token tokenizer, a small GPT-2 (NoPE by default), training rounds
through the transformers Trainer with a carried optimizer and a warmup-stable-decay schedule, and batched greedy
answers.

Does not cover: which problems and labels a round uses (``label``, ``mixture``) or where models are stored.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import IterableDataset

from selfloop.config import FrontierConfig

PAD, EOS = "<pad>", "<eos>"


def build_tokenizer(alphabet: str):
    """One token per character of ``alphabet`` (digits never merge), plus pad and end-of-sequence."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(alphabet))
    vocab = {c: i for i, c in enumerate([PAD, EOS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def build_model(cfg: FrontierConfig, tokenizer):
    """A fresh GPT-2; with ``position = "nope"`` its position table is zero and frozen (no position signal)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if cfg.position == "nope":
        with torch.no_grad():
            model.transformer.wpe.weight.zero_()
        model.transformer.wpe.weight.requires_grad_(False)
    return model


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    """AdamW over the trainable weights; it lives as long as the model, so rounds continue its moments."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)


Draw = Callable[[random.Random], tuple[str, str]]


class ExampleStream(IterableDataset):
    """An endless stream of tokenized (prompt, answer) examples; loss falls on answer and eos only.

    With ``programs`` a share of whole batches comes from it instead of ``draw``: one kind per batch, so a batch of
    short answers is never padded to the length of a program.
    """

    def __init__(
        self,
        draw: Draw,
        tokenizer,
        seed: int,
        *,
        programs: Draw | None = None,
        program_share: float = 0.0,
        batch_size: int = 1,
    ) -> None:
        self.draw, self.seed = draw, seed
        self.programs, self.program_share, self.batch_size = programs, program_share, batch_size
        self.ids = {t: i for t, i in tokenizer.get_vocab().items()}
        self.eos = tokenizer.eos_token_id

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        rng = random.Random(self.seed)
        while True:
            draw = self.programs if self.programs and rng.random() < self.program_share else self.draw
            for _ in range(self.batch_size):
                prompt, answer = draw(rng)
                p = [self.ids[c] for c in prompt]
                a = [self.ids[c] for c in answer] + [self.eos]
                yield {"input_ids": p + a, "labels": [-100] * len(p) + a}


class Collator:
    """Right-pads a batch; in ``offset`` mode each sequence starts at a random position (Ruoss et al. 2023)."""

    def __init__(self, pad_id: int, position: str, n_positions: int, seed: int) -> None:
        self.pad_id, self.position, self.n_positions = pad_id, position, n_positions
        self.rng = random.Random(seed)

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.position == "offset":
            starts = [self.rng.randint(0, self.n_positions - width) for _ in batch]
            out["position_ids"] = torch.tensor(starts)[:, None] + torch.arange(width)[None, :]
        return out


def train_steps(
    model,
    optimizer: torch.optim.Optimizer,
    stream: ExampleStream,
    collator: Collator,
    *,
    steps: int,
    lr: float,
    warmup: int,
    decay_fraction: float,
    batch_size: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """``steps`` optimizer steps with the transformers Trainer: warmup, stable, then a linear decay to 0.

    ``progress(done, total)`` hears about every 1 % of the steps.
    """
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, get_wsd_schedule
    from transformers.utils import logging as hf_logging

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress and (state.global_step % max(1, state.max_steps // 100) == 0):
                progress(state.global_step, state.max_steps)

    hf_logging.set_verbosity_error()
    for group in optimizer.param_groups:
        # A new schedule per round starts from this round's peak, whatever the last round decayed to.
        group["lr"] = group["initial_lr"] = lr
    decay = max(1, round(steps * decay_fraction))
    schedule = get_wsd_schedule(
        optimizer,
        num_warmup_steps=min(warmup, steps - decay),
        num_decay_steps=decay,
        num_training_steps=steps,
        decay_type="linear",
    )
    with tempfile.TemporaryDirectory(prefix="selfloop-frontier-") as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            max_grad_norm=1.0,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            use_cpu=next(model.parameters()).device.type == "cpu",
            seed=seed,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=stream, data_collator=collator, optimizers=(optimizer, schedule)
        )
        trainer.remove_callback(PrinterCallback)  # the caller reports; no metrics dicts on stdout
        trainer.add_callback(Progress())
        result = trainer.train()
    model.eval()
    return {"steps": steps, "train_loss": round(result.training_loss, 5)}


class ModelSolver:
    """Answers prompts with a model: greedy or sampled, batched by prompt length (so no padding is ever needed)."""

    def __init__(self, model, tokenizer, chunk: int = 1024) -> None:
        self.model, self.chunk = model, chunk
        self.context = model.config.n_positions
        self.ids = tokenizer.get_vocab()
        self.chars = {i: t for t, i in self.ids.items()}
        self.eos, self.pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def greedy(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        """Answers (at most prompt length + 1 tokens: every built-in answer fits) or programs (``max_new_tokens``)."""
        return [texts[0] for texts in self._generate(prompts, 1, None, 0, max_new_tokens)]

    def sample(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        return self._generate(prompts, n, temperature, seed)

    @torch.no_grad()
    def _generate(
        self, prompts: Sequence[str], n: int, temperature: float | None, seed: int, max_new_tokens: int | None = None
    ) -> list[list[str]]:
        self.model.eval()
        device = next(self.model.parameters()).device
        out: list[list[str]] = [[] for _ in prompts]
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        if temperature:
            torch.manual_seed(seed)  # generate draws from torch's global generator
        for length, idx in sorted(by_length.items()):
            rows = [i for i in idx for _ in range(n)]
            for start in range(0, len(rows), self.chunk):
                part = rows[start : start + self.chunk]
                ids = torch.tensor([[self.ids[c] for c in prompts[i]] for i in part], device=device)
                # top_k=0: sample from the whole distribution (generate's default keeps the top 50).
                sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature else {}
                gen = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=min(max_new_tokens or length + 1, self.context - length),
                    eos_token_id=self.eos,
                    pad_token_id=self.pad,
                    **(sampling or {"do_sample": False}),
                )
                for i, row in zip(part, gen[:, length:].tolist()):
                    out[i].append(self._text(row))
        return out

    def _text(self, row: list[int]) -> str:
        chars = []
        for t in row:
            if t == self.eos or t == self.pad:
                break
            chars.append(self.chars[t])
        return "".join(chars)
