"""Memory and time of the training data path at 1x, 4x and 16x corpus size.

Three ways from a snapshot file to a few Trainer steps, each measured in a fresh
process (so peak RSS is its own) on the same snapshot and tokenizer:

- ``list``: the in-memory baseline (the path before Arrow): ``read_snapshot`` ->
  ``encode_docs`` -> ``to_dataset``; every document and token id is a Python
  object at once.
- ``arrow``: ``build_train_dataset`` (what the training child runs): examples
  stream from the file into an Arrow file in the run dir, memory-mapped.
- ``stream``: ``build_train_dataset(streaming=True)``: tokenized while read.

Each process imports the libraries, loads the tokenizer and builds the model,
takes its RSS ("before"), prepares the data (timed; "prep MB" = peak RSS then
minus before: what holding the prepared data costs), runs a few Trainer steps
(timed; "total MB" = final peak minus before, adding the Trainer's own state and,
for ``stream``, the shuffle buffer it fills on the first batch). The growth
exponent of these figures over the sizes says whether memory stays flat (near 0)
or grows with the corpus (near 1).

Run: ``python -m bench.memory_scale`` (1x = 4 MB of text; about 4 minutes on 2
cores) or ``--quick`` (1x = 0.25 MB). Figures go to
``bench/results/memory_scale.json``.

Does not cover: tokenizer training (the child trains it once per scratch run,
over the same lazy reader) or the parent writing the snapshot.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, growth, say
from bench.project import synthetic_file

NAME = "memory_scale"
PATHS = ("list", "arrow", "stream")
SCALES = (1, 4, 16)
DOC_CHARS = 2000  # ingest.chunk_chars: long files arrive as documents of about this size
STEPS = {False: 5, True: 2}  # by --quick
MODEL = {"vocab_size": 2048, "n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 128}
TRAIN = {"batch_size": 16, "block_size": 128, "log_steps": 1, "save_steps": 1000, "warmup_ratio": 0.0}


def write_snapshot_file(path: Path, n_docs: int) -> int:
    """``n_docs`` synthetic documents, one in ten a chat; returns the bytes written. Written as it goes."""
    from selfloop.records import Doc

    size = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_docs):
            text = synthetic_file(i, DOC_CHARS)
            if i % 10 == 9:
                head, _, rest = text.partition(". ")
                content = json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": head + "?"},
                            {"role": "assistant", "content": rest[:400]},
                        ]
                    }
                )
                doc = Doc(i, "orig", "chat", content, len(content), str(i))
            else:
                doc = Doc(i, "orig", "text", text, len(text), str(i))
            line = json.dumps(doc.__dict__) + "\n"
            f.write(line)
            size += len(line.encode())
    return size


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_one(path: str, snapshot: Path, tokenizer_dir: Path, workdir: Path, steps: int) -> dict[str, Any]:
    """One path in this process: RSS before, prep and step seconds, peak RSS after each."""
    from transformers import AutoTokenizer, Trainer, default_data_collator

    from selfloop.config import parse_config
    from selfloop.model.factory import build_scratch_model
    from selfloop.train.data import build_train_dataset, encode_docs, read_snapshot, to_dataset
    from selfloop.train.run import training_arguments

    cfg = parse_config({"model": MODEL, "train": TRAIN}, env=False)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    model = build_scratch_model(cfg.model, tokenizer)
    targs = training_arguments(cfg, workdir, steps)
    targs.save_strategy = "no"  # the steps are what is timed, not checkpoint writes
    before = current_rss_mb()

    started = time.perf_counter()
    if path == "list":
        enc = encode_docs(read_snapshot(snapshot), tokenizer, cfg.train.block_size)
        dataset = to_dataset(enc["text"] + enc["chat"])
        examples = len(dataset)
    else:
        dataset, counts = build_train_dataset(
            snapshot,
            tokenizer,
            cfg.train.block_size,
            workdir / "arrow",
            streaming=path == "stream",
            shuffle_buffer=cfg.train.shuffle_buffer,
        )
        examples = sum(counts.values()) if counts else None
    prep = time.perf_counter() - started
    prep_peak = peak_rss_mb()

    trainer = Trainer(model=model, args=targs, train_dataset=dataset, data_collator=default_data_collator)
    started = time.perf_counter()
    trainer.train()
    trained = time.perf_counter() - started
    peak = peak_rss_mb()
    return {
        "before_mb": round(before, 1),
        "prep_mb": round(prep_peak - before, 1),
        "total_mb": round(peak - before, 1),
        "peak_mb": round(peak, 1),
        "prep_s": round(prep, 2),
        "steps_s": round(trained, 2),
        "steps": steps,
        "examples": examples,
    }


def run(quick: bool, workdir: Path) -> Recorder:
    from selfloop.model.tokenizer import train_tokenizer
    from selfloop.train.data import iter_snapshot

    rec = Recorder(NAME, quick, "python -m bench.memory_scale" + (" --quick" if quick else ""))
    base_docs = 125 if quick else 2000
    tokenizer_dir = workdir / "tokenizer"
    rows: dict[str, dict[str, Any]] = {}
    for scale in SCALES:
        snapshot = workdir / f"data-{scale}x.jsonl"
        size = write_snapshot_file(snapshot, base_docs * scale)
        if scale == 1:  # one tokenizer for every run, trained on the 1x corpus
            texts = (d.content for d in iter_snapshot(snapshot) if d.kind == "text")
            train_tokenizer(texts, MODEL["vocab_size"], max_length=MODEL["n_positions"]).save_pretrained(tokenizer_dir)
        row: dict[str, Any] = {"documents": base_docs * scale, "snapshot_mb": round(size / 2**20, 2)}
        for path in PATHS:
            out = workdir / f"{path}-{scale}x"
            out.mkdir()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.memory_scale",
                    "--one",
                    path,
                    "--snapshot",
                    str(snapshot),
                    "--tokenizer",
                    str(tokenizer_dir),
                    "--workdir",
                    str(out),
                    "--steps",
                    str(STEPS[quick]),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{path} at {scale}x failed: {proc.stderr[-2000:]}")
            row[path] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows[f"{scale}x"] = row
        for p in PATHS:
            r = row[p]
            say(
                f"{scale:>3}x {row['snapshot_mb']:8.2f} MB  {p:<6} prep +{r['prep_mb']:7.1f} MB {r['prep_s']:7.2f} s   "
                f"{r['steps']} steps: total +{r['total_mb']:7.1f} MB "
                f"{r['steps_s']:6.2f} s   peak RSS {r['peak_mb']:7.1f} MB"
            )
    sizes = [rows[f"{s}x"]["snapshot_mb"] for s in SCALES]
    rec.figures = {
        "by_scale": rows,
        # +1 MB keeps a flat (near zero) figure from turning into a noisy log of a tiny number.
        "prep_memory_growth": {p: growth(sizes, [rows[f"{s}x"][p]["prep_mb"] + 1 for s in SCALES]) for p in PATHS},
        "total_memory_growth": {p: growth(sizes, [rows[f"{s}x"][p]["total_mb"] + 1 for s in SCALES]) for p in PATHS},
        "prep_time_growth": {p: growth(sizes, [rows[f"{s}x"][p]["prep_s"] for s in SCALES]) for p in PATHS},
        "peak_ratio_16x_list_over_arrow": round(rows["16x"]["list"]["peak_mb"] / rows["16x"]["arrow"]["peak_mb"], 2),
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory_scale", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="1x = 0.25 MB of text (CI smoke): figures exist, numbers mean little"
    )
    p.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)  # internal: measure one path in this process
    p.add_argument("--snapshot", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=STEPS[False], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.snapshot, args.tokenizer, args.workdir, args.steps)))
        return 0
    with tempfile.TemporaryDirectory(prefix="selfloop-memscale-") as tmp:
        rec = run(args.quick, Path(tmp))
    path = rec.write()
    for figure in ("prep_memory_growth", "total_memory_growth"):
        say(
            f"{figure} exponent (0 = flat, 1 = proportional to the corpus): "
            + ", ".join(f"{p} {rec.figures[figure][p]['exponent']}" for p in PATHS)
        )
    say(f"16x peak RSS, list / arrow: {rec.figures['peak_ratio_16x_list_over_arrow']}x; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
