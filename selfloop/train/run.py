"""The training child: one Trainer run that turns a data snapshot into a model.

Entry point ``python -m selfloop.train --out RUNDIR [--watch-pid PID]`` (built by ``selfloop.train.launch``), the
same under torchrun and accelerate (one DDP rank per process). It reads only the run dir the parent prepared
(``selfloop.train.rundir``) and writes ``RUNDIR/final`` and ``RUNDIR/result.json`` (rank 0 only), after DPO when
``RUNDIR/pairs.jsonl`` exists. Exit codes: 0 finished (all steps or the wall budget), 3 interrupted by SIGTERM
(checkpoint saved; run again to resume), 1 failure (message on stderr).

Does not cover: launching (``selfloop.train.launch``), DPO itself (``selfloop.train.preference``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from selfloop.config import Config
from selfloop.errors import SelfloopError
from selfloop.model.factory import (
    adopt_chat_template,
    apply_lora,
    build_scratch_model,
    load_pretrained,
    resolve_device,
    resolve_dtype,
    save_generation,
    saved_dtype,
    use_lora,
)
from selfloop.model.tokenizer import train_tokenizer
from selfloop.store import Store
from selfloop.train.callbacks import MetricsCallback, StopCallback
from selfloop.train.data import (
    build_train_dataset,
    chat_skip_reasons,
    iter_snapshot,
    messages_of,
    missing_kinds,
    trainable_kinds,
)
from selfloop.train.preference import read_pairs, train_dpo
from selfloop.train.rundir import EXIT_INTERRUPTED, FAILURE_PREFIX, RunDir, RunValues, last_complete_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m selfloop.train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", required=True, help="run dir (holds data.jsonl and the resolved config; receives checkpoints, final/)"
    )
    p.add_argument("--watch-pid", type=int, default=None, help="stop (saving a checkpoint) when this process dies")
    return p.parse_args(argv)


def starting_point(cfg: Config, init: str, run: RunDir):
    """The (model, tokenizer) training starts from, in fp32 for training."""
    from transformers import AutoTokenizer, set_seed

    set_seed(cfg.train.seed)  # the scratch initialisation is part of the recipe
    new_tokens: list[int] = []
    if init == "scratch":
        tok_dir = run.tokenizer
        if not (tok_dir / "tokenizer.json").is_file():
            texts = _tokenizer_texts(iter_snapshot(run.data), messages_of)
            train_tokenizer(texts, cfg.model.vocab_size, max_length=cfg.model.n_positions).save_pretrained(tok_dir)
        # Always the saved copy: a fresh run, a resumed one and every rank then tokenize identically.
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        model = build_scratch_model(cfg.model, tokenizer)
    else:
        import torch

        model, tokenizer = load_pretrained(init, dtype=torch.float32, for_training=True)
        if added := adopt_chat_template(model, tokenizer):
            _log(
                f"{init} has no chat template: using selfloop's (<|role|>...<|end|>), "
                f"added special tokens {' '.join(added)}, embeddings resized to {len(tokenizer)}"
            )
            new_tokens = tokenizer.convert_tokens_to_ids(added)
    if use_lora(cfg.model, model, pretrained=init != "scratch"):
        # Tokens added just now have untrained embedding rows: LoRA trains those rows too.
        model = apply_lora(model, cfg.model, new_tokens=new_tokens)
        trainable, total = model.get_nb_trainable_parameters()
        targets = sorted(model.peft_config["default"].target_modules)
        _log(
            f"LoRA r={cfg.model.lora_r} alpha={cfg.model.lora_alpha} dropout={cfg.model.lora_dropout} on "
            f"{', '.join(targets)}: {trainable:,} of {total:,} parameters train ({trainable / total:.2%})"
        )
    return model, tokenizer


def _tokenizer_texts(docs, messages_of):
    """The orig training split as plain strings: text as is, chats by message content."""
    for d in docs:
        if d.origin != "orig":
            continue
        if d.kind == "text":
            yield d.content
        else:
            for m in messages_of(d) or []:
                yield m["content"]


def training_arguments(cfg: Config, run_dir: Path, steps: int):
    """The Trainer's arguments. Creating them joins the process group under torchrun / accelerate."""
    from transformers import TrainingArguments

    device = resolve_device(cfg.model)
    dtype = resolve_dtype(cfg.model, device)
    t = cfg.train
    return TrainingArguments(
        output_dir=str(RunDir(run_dir).checkpoints),
        max_steps=steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of max_steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.log_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        eval_strategy="no",
        report_to=t.report_to,
        push_to_hub=False,
        disable_tqdm=True,
        log_level="warning",
        use_cpu=device == "cpu",  # several CPU processes then talk over gloo
        bf16=device != "cpu" and str(dtype) == "torch.bfloat16",
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )


def train(args: argparse.Namespace) -> int:
    """One training run on ``args.out``; returns the exit code.

    The parent has already written ``RUNDIR/data.jsonl`` (the snapshot) and the run's
    resolved config: the Config, generation, init, steps, learning rate and state
    database, the only settings this process reads. Steps:

    1. build the starting point: a scratch GPT-2 with a BPE tokenizer trained on
       the snapshot's orig documents (saved to ``RUNDIR/tokenizer`` first, so a
       resumed run and the other ranks reuse it) or a local model dir (the
       champion, generation 0 or a Hugging Face base), optionally with LoRA adapters;
    2. tokenize the snapshot deterministically into a memory-mapped Arrow file in
       ``RUNDIR/arrow`` (or a stream, ``train.streaming``) and train with
       ``Trainer``, checkpointing every ``save_steps`` into ``RUNDIR/checkpoints``
       and resuming from the last checkpoint if one exists;
    3. write ``RUNDIR/final`` (model + tokenizer, safetensors) and ``RUNDIR/result.json``;
    4. when the parent wrote ``RUNDIR/pairs.jsonl``, step 3 goes to ``RUNDIR/sft``
       instead, and DPO continues from it into ``RUNDIR/final``; a resumed run whose
       ``sft/result.json`` says done starts at DPO.

    Rank 0 alone does steps 1-2's one-time work (the others wait, then load what it
    wrote) and alone writes metrics, ``final`` and ``result.json``.
    """
    from transformers import Trainer, default_data_collator

    run = RunDir(args.out)
    cfg, values = run.read_config()
    cfg.train.learning_rate = values.learning_rate  # a recipe's own; validated on assignment, like the config file
    if not run.data.is_file():
        raise SelfloopError(f"{run.data}: no data snapshot (the parent writes it before launching)")
    stop = StopCallback(cfg.train.max_minutes, watch_pid=args.watch_pid)  # SIGTERM is honoured from here on
    pairs = read_pairs(run.pairs)
    if pairs and _finished(run.sft):
        return _preference_stage(cfg, run, pairs, stop)  # resumed at the SFT -> DPO boundary
    targs = training_arguments(cfg, run.path, values.steps)
    t = cfg.train
    # Rank 0 trains the tokenizer, writes the Arrow cache and clears torn checkpoints;
    # the other ranks wait for it, then load the same files.
    with targs.main_process_first(local=False, desc="tokenizer, training data and checkpoints"):
        model, tokenizer = starting_point(cfg, values.init, run)
        dataset, counts = build_train_dataset(
            run.data,
            tokenizer,
            t.block_size,
            run.arrow,
            streaming=t.streaming,
            shuffle_buffer=t.shuffle_buffer,
            seed=t.seed,
        )
        last = last_complete_checkpoint(Path(targs.output_dir))
    if counts is not None:
        check_examples(run.data, tokenizer, t.block_size, counts)
    # Every step a full global batch: one process and N processes (same global batch) then
    # see identical batches. Kept otherwise, accelerate would complete a ragged last batch
    # of each epoch by recycling examples on N processes only. A corpus smaller than one
    # batch keeps its single partial batch.
    targs.dataloader_drop_last = counts is not None and sum(counts.values()) >= t.batch_size * targs.world_size
    primary = targs.process_index == 0
    store = Store.open(values.db) if primary else None
    callbacks = [MetricsCallback(store, values.generation, run.metrics, run.metrics_csv), stop] if primary else [stop]
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.logs)  # [train] report_to's TensorBoard logs: kept by the registry
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=default_data_collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    started = time.time()
    output = trainer.train(resume_from_checkpoint=last)
    if not primary:
        # Exit 0 even when interrupted: a launcher tears the whole job down as soon as
        # one worker exits non-zero, which must not cut rank 0 off while it writes.
        return 0
    out = RunDir(run.sft) if pairs else run
    _write_generation(cfg, values, out, trainer, tokenizer, output, stop, last, counts, time.time() - started)
    store.close()
    if stop.terminated:
        return EXIT_INTERRUPTED
    return _preference_stage(cfg, run, pairs, stop) if pairs else 0


def _log(line: str) -> None:
    print(f"selfloop.train: {line}", flush=True)  # the launcher sends the child's output to RUNDIR/train.log


def check_examples(snapshot: Path, tokenizer, block_size: int, counts: dict[str, int]) -> None:
    """Log the training examples by kind; a kind with documents and no example is an error with its reason."""
    documents = trainable_kinds(iter_snapshot(snapshot))
    _log(
        "examples by kind: "
        + ", ".join(f"{kind} {counts.get(kind, 0)} from {n} documents" for kind, n in documents.items())
    )
    if not sum(counts.values()):
        raise SelfloopError("no training examples: the snapshot has no usable text or chat documents")
    missing = missing_kinds(documents, counts)
    if not missing:
        return
    why = ""
    if "chat" in missing:
        reasons = chat_skip_reasons(iter_snapshot(snapshot), tokenizer, block_size)
        why = ": " + "; ".join(f"{reason} ({len(ids)} documents, e.g. {ids[0]})" for reason, ids in reasons.items())
    raise SelfloopError(
        " and ".join(f"{documents[k]} {k} documents" for k in missing) + " gave no training example" + why
    )


def _finished(out: Path) -> bool:
    try:
        return json.loads(RunDir(out).result.read_text())["status"] == "done"
    except (FileNotFoundError, ValueError, KeyError):
        return False


def _preference_stage(cfg: Config, run: RunDir, pairs: list[dict[str, str]], stop) -> int:
    """DPO from the finished SFT model in ``RUNDIR/sft`` into ``RUNDIR/final`` (one process: the parent sees to it)."""
    import torch

    sft = RunDir(run.sft)
    result = json.loads(sft.result.read_text())
    model, tokenizer = load_pretrained(sft.final, dtype=torch.float32, for_training=True)
    reference, _ = load_pretrained(sft.final, dtype=torch.float32)  # the frozen SFT model, also after a resume
    started = time.time()
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.logs / "preference")
    result["preference"] = train_dpo(
        model,
        reference,
        tokenizer,
        pairs,
        cfg.train.preference,
        run.preference,
        max_length=cfg.model.n_positions,
        seed=cfg.train.seed,
        callbacks=[stop],
        use_cpu=resolve_device(cfg.model) == "cpu",
        report_to=cfg.train.report_to,
    )
    result["preference"]["seconds"] = time.time() - started
    if stop.terminated:
        result.update(status="interrupted", stopped_by="sigterm")
    else:
        save_generation(model, tokenizer, run.final, dtype=saved_dtype(sft.final))
    _write_result(run, result)
    return EXIT_INTERRUPTED if stop.terminated else 0


def _write_result(out: RunDir, result: dict) -> None:
    out.path.mkdir(parents=True, exist_ok=True)
    tmp = out.result.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out.result)  # the parent treats a result file as final


def _write_generation(
    cfg: Config, values: RunValues, out: RunDir, trainer, tokenizer, output, stop, last, counts, seconds
) -> None:
    """Rank 0's output: ``final`` (unless interrupted) and ``result.json`` in ``out`` (the run dir, or its ``sft``)."""
    result = {
        "generation": values.generation,
        "status": "interrupted" if stop.terminated else "done",
        "stopped_by": "sigterm" if stop.terminated else ("time" if stop.out_of_time else "steps"),
        "resumed_from": last,
        "global_step": trainer.state.global_step,
        "max_steps": values.steps,
        "train_loss": output.training_loss,
        "tokens": trainer.state.num_input_tokens_seen,
        "examples": counts,
        "world_size": trainer.args.world_size,
        "seconds": seconds,
    }
    if not stop.terminated:
        final = out.final
        model = trainer.model  # the bare model, not its DDP wrapper
        if hasattr(model, "merge_and_unload"):  # LoRA
            model = model.merge_and_unload()  # a generation must load with the plain Auto classes
        # In the dtype the starting point was saved in (a bf16 base stays bf16); scratch stays fp32.
        save_generation(model, tokenizer, final, dtype=None if values.init == "scratch" else saved_dtype(values.init))
    _write_result(out, result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except SelfloopError as e:
        _fail(str(e))
        return 1
    except OSError as e:  # a full disk, a vanished run dir: one clear line for the daemon's log
        where = f" ({e.filename})" if e.filename else ""
        _fail(f"{e.strerror or e}{where}")
        return 1
    except Exception as e:
        # Writers that fail on a full disk without an OSError: torch's checkpoint writer (a C++ stream
        # error, "basic_ios::clear: iostream error") and safetensors (SafetensorError, "os error 28").
        full = disk_full(Path(args.out), e)
        if full is None:
            raise
        _fail(full)
        return 1


def _fail(reason: str) -> None:
    # Its own marker: the launcher reports this line, never an informational one of _log.
    print(f"{FAILURE_PREFIX}{reason}", file=sys.stderr, flush=True)


_WRITE_FAILURE = re.compile(r"writ|serializ|iostream|basic_ios|inline_container|os error 28", re.IGNORECASE)
_NEARLY_FULL = 64 * 2**20  # less room than a checkpoint of even a tiny model needs


def disk_full(path: Path, error: BaseException) -> str | None:
    """A clear reason when ``error`` is a failed write and the filesystem of ``path`` is (nearly) full, else None."""
    if not _WRITE_FAILURE.search(str(error)):
        return None
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    if free >= _NEARLY_FULL:
        return None
    return (
        f"No space left on device: {free / 2**20:.1f} MiB free where {path} is, "
        f"while writing ({type(error).__name__}: {error})"
    )
