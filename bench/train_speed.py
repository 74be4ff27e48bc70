"""Training throughput: selfloop's training phase against a hand-written AdamW loop, and MFU.

selfloop's side is the real training child (``launch_training`` -> ``python -m
selfloop.train``: Trainer, checkpoints every ``save_steps``, metrics callback)
on the ingested starter corpus; its speed is read from the steps and timestamps
the child logs, from the first log line to the last (warm-up excluded, the
checkpoint saves in between included). The baseline, in the same run, is a plain
torch loop (forward, backward, clip, AdamW step) on the same model config,
tokenizer and examples, with batches of the same shape, timed over the same
steps. MFU divides the model's FLOP rate (6 x matmul parameters x tokens/s, plus
attention) by a measured fp32 matmul ceiling (``torch.mm`` of large square
matrices, same thread count).

Cost growth: a training step does not depend on corpus size (fixed batch shape),
so what grows with the corpus is the phase's data preparation (tokenizer
training, encoding, Arrow dataset), measured at 1x, 4x and 16x.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, growth, median, quick_flag, say
from bench.project import TINY, starter_texts
from selfloop.testing import make_project

NAME = "train"


def matmul_ceiling(sizes: tuple[int, ...], reps: int) -> dict[str, Any]:
    """Best median fp32 FLOP/s of ``torch.mm`` over square sizes."""
    import torch

    found = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t)
        found[n] = 2 * n**3 / median(times)
    return {
        "flops": max(found.values()),
        "by_size": {str(k): round(v / 1e9, 1) for k, v in found.items()},
        "threads": torch.get_num_threads(),
    }


def model_flops_per_token(model, block_size: int) -> float:
    """6 x (parameters that take part in matmuls) + attention (12 x layers x context x width), per token."""
    cfg = model.config
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n and p.dim() == 2)
    return 6 * matmul_params + 12 * cfg.n_layer * block_size * cfg.n_embd


def trainer_rate(metrics: Path, tokens_per_step: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    first, last = rows[0], rows[-1]
    steps = last["step"] - first["step"]
    seconds = last["ts"] - first["ts"]
    return {
        "steps": steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": tokens_per_step * steps / seconds,
        "from_step": first["step"],
        "to_step": last["step"],
    }


def manual_rate(cfg, tokenizer, examples: list[dict], steps: int, from_step: int) -> dict[str, Any]:
    """The hand-written loop over the same examples (seeded order), timed from ``from_step`` to ``steps``."""
    import torch
    from transformers import default_data_collator, set_seed

    from selfloop.model.factory import build_scratch_model

    t = cfg.train
    set_seed(t.seed)
    model = build_scratch_model(cfg.model, tokenizer)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    order = list(range(len(examples)))
    random.Random(t.seed).shuffle(order)
    need = steps * t.batch_size
    order = (order * (need // len(order) + 1))[:need]
    batches = [
        default_data_collator([examples[i] for i in order[s * t.batch_size : (s + 1) * t.batch_size]])
        for s in range(steps)
    ]
    stamps = []
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    seconds = stamps[steps - 1] - stamps[from_step - 1]
    return {
        "steps": steps - from_step,
        "seconds": round(seconds, 3),
        "tokens_per_s": t.batch_size * t.block_size * (steps - from_step) / seconds,
        "model": model,
    }


def prep_cost(cfg, texts: list[str], multiple: int) -> float:
    """Seconds for the training phase's data preparation on ``multiple`` copies of ``texts``."""
    from selfloop.model.tokenizer import train_tokenizer
    from selfloop.records import Doc
    from selfloop.train.data import encode_docs, to_dataset

    corpus = [f"{i}. {t}" for i in range(multiple) for t in texts]
    docs = [Doc(i, "orig", "text", c, len(c), str(i)) for i, c in enumerate(corpus)]
    start = time.perf_counter()
    tok = train_tokenizer(corpus, cfg.model.vocab_size, max_length=cfg.model.n_positions)
    enc = encode_docs(docs, tok, cfg.train.block_size)
    to_dataset(enc["text"])
    return time.perf_counter() - start


def run(quick: bool, workdir: Path) -> Recorder:
    from transformers import AutoTokenizer

    from selfloop.ingest.ingestor import Ingestor
    from selfloop.store import Store
    from selfloop.store.corpus import load_documents
    from selfloop.train.data import encode_docs, read_snapshot, write_snapshot
    from selfloop.train.launch import launch_training
    from selfloop.train.rundir import RunDir, RunValues

    rec = Recorder(NAME, quick, "python -m bench.train_speed" + (" --quick" if quick else ""))
    overrides = {**TINY, "train": {**TINY["train"], "log_steps": 2}} if quick else None
    steps = 12 if quick else 100
    config_path, cfg, paths = make_project(workdir / "proj", overrides, starter=True)
    with Store.open(paths.db) as store:
        Ingestor(cfg.ingest, cfg.watch, paths, store).scan()
        docs = load_documents(store, split="train", origin="orig")
    t = cfg.train
    tokens_per_step = t.batch_size * t.grad_accum * t.block_size

    sizes = (512, 1024) if quick else (1024, 2048)
    tokenizer = None
    examples: list[dict] = []
    trainer_runs, manual_runs = [], []
    # A/B/A/B with the ceiling measured next to each run: the machine is shared, so
    # load shifts between runs; the best run of each side is compared.
    for round_ in range(1 if quick else 2):
        run = RunDir(paths.runs / f"bench{round_}")
        run.path.mkdir(parents=True)
        write_snapshot(run.data, docs)
        ceiling = matmul_ceiling(sizes, 3)
        say(
            f"[train] round {round_ + 1}: selfloop training child, "
            f"{steps} steps of {t.batch_size} x {t.block_size} tokens ..."
        )
        run.write_config(cfg, RunValues.of(cfg, paths, generation=0, init="scratch", steps=steps))
        result = launch_training(run.path)
        trainer = {
            **trainer_rate(run.metrics, tokens_per_step),
            "ceiling_gflops": round(ceiling["flops"] / 1e9, 1),
            "global_step": result["global_step"],
            "train_loss": result["train_loss"],
        }
        trainer_runs.append(trainer)
        say(
            f"[train]   selfloop (Trainer child): {trainer['tokens_per_s']:.0f} "
            f"tokens/s over steps {trainer['from_step']}-{trainer['to_step']}"
        )
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(run.tokenizer, local_files_only=True)
            enc = encode_docs(read_snapshot(run.data), tokenizer, t.block_size)
            examples = enc["text"] + enc["chat"]
        ceiling = matmul_ceiling(sizes, 3)
        manual = {
            **manual_rate(cfg, tokenizer, examples, steps, trainer["from_step"]),
            "ceiling_gflops": round(ceiling["flops"] / 1e9, 1),
        }
        model = manual.pop("model")
        manual_runs.append(manual)
        say(f"[train]   hand-written AdamW loop: {manual['tokens_per_s']:.0f} tokens/s")
    trainer = max(trainer_runs, key=lambda r: r["tokens_per_s"])
    manual = max(manual_runs, key=lambda r: r["tokens_per_s"])
    fpt = model_flops_per_token(model, t.block_size)
    ratio = trainer["tokens_per_s"] / manual["tokens_per_s"]
    mfu = trainer["tokens_per_s"] * fpt / (trainer["ceiling_gflops"] * 1e9)
    mfu_manual = manual["tokens_per_s"] * fpt / (manual["ceiling_gflops"] * 1e9)
    say(
        f"[train] best of each: ratio selfloop/hand-written = {ratio:.3f} (target >= 0.95); "
        f"MFU {mfu:.2f} (target >= 0.5), hand-written {mfu_manual:.2f}"
    )

    texts = starter_texts()
    base_chars = 64_000 if quick else 400_000
    paragraphs = [p for text in texts for p in text.split("\n\n") if p.strip()]
    base: list[str] = []
    while paragraphs and sum(map(len, base)) < base_chars:
        base.append(paragraphs.pop(0))
    prep_cost(cfg, base[:20], 1)  # warm-up: first-use imports and allocations are not corpus cost
    costs = [prep_cost(cfg, base, m) for m in (1, 4, 16)]
    scaling = growth([1, 4, 16], costs)
    say(
        f"[train] data preparation at 1x/4x/16x ({sum(map(len, base)) / 1e6:.2f} MB base): "
        f"{', '.join(f'{c:.2f}s' for c in costs)} -> {scaling['growth']} (exponent {scaling['exponent']})"
    )

    rec.figures = {
        "model": {
            "n_layer": cfg.model.n_layer,
            "n_embd": cfg.model.n_embd,
            "vocab": len(tokenizer),
            "params": sum(p.numel() for p in model.parameters()),
            "flops_per_token": fpt,
        },
        "batch": {"batch_size": t.batch_size, "block_size": t.block_size, "tokens_per_step": tokens_per_step},
        "trainer_child": trainer,
        "hand_written": manual,
        "runs": {"trainer_child": trainer_runs, "hand_written": manual_runs},
        "ratio": round(ratio, 4),
        "target_ratio": 0.95,
        "matmul_ceiling_gflops": trainer["ceiling_gflops"],
        "model_gflops": round(trainer["tokens_per_s"] * fpt / 1e9, 1),
        "mfu": round(mfu, 3),
        "mfu_hand_written": round(mfu_manual, 3),
        "target_mfu": 0.5,
        "scaling_data_prep": scaling,
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    quick = quick_flag(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        rec = run(quick, Path(tmp))
    say(f"[train] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
