"""Hot reload after a promotion: ``ModelHolder.reload_if_changed()`` against a cold start.

Two generations of the default-size scratch model are installed in a registry
(no store); the holder serves generation 0, generation 1 is promoted, and the
holder's reload is timed (the daemon's path after ``promote``). Baselines in
the same run: a cold start of the model in a fresh process (interpreter,
imports, ``load_pretrained``: what a restart would cost) and ``load_pretrained``
alone in this already-warm process.

Cost growth: the reload at 1x, 4x and 16x model size (width 1x, 2x, 4x).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Recorder, growth, median, quick_flag, say
from bench.project import TINY, starter_texts

NAME = "reload"


def save_generations(models_dir: Path, cfg, tokenizer, count: int = 2) -> Any:
    from transformers import set_seed

    from selfloop.model.factory import build_scratch_model
    from selfloop.model.registry import Registry

    registry = Registry(models_dir)
    for n in range(count):
        set_seed(n)
        out = models_dir.parent / f"build{n}"
        build_scratch_model(cfg.model, tokenizer).save_pretrained(out)
        tokenizer.save_pretrained(out)
        registry.add(n, out, {"bench": True}, {})
    registry.set_current(0)
    return registry


def time_reloads(registry, reps: int) -> list[float]:
    from selfloop.model.factory import load_pretrained
    from selfloop.model.holder import ModelHolder

    holder = ModelHolder(registry, lambda path: load_pretrained(path))
    holder.reload_if_changed()  # serving generation 0
    times = []
    for _ in range(reps):
        registry.set_current(1 - holder.generation)  # a promotion moves the pointer
        t = time.perf_counter()
        swapped = holder.reload_if_changed()
        times.append(time.perf_counter() - t)
        if not swapped:
            raise RuntimeError("the holder did not pick up the promoted generation")
    return times


def cold_start(path: Path, reps: int) -> list[float]:
    code = f"from selfloop.model.factory import load_pretrained; load_pretrained({str(path)!r})"
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def run(quick: bool, workdir: Path) -> Recorder:
    from transformers.utils import logging as hf_logging

    from selfloop.config import Config
    from selfloop.model.factory import load_pretrained
    from selfloop.model.tokenizer import train_tokenizer

    hf_logging.disable_progress_bar()
    rec = Recorder(NAME, quick, "python -m bench.reload" + (" --quick" if quick else ""))
    base = Config(**TINY) if quick else Config()
    tokenizer = train_tokenizer(starter_texts(), base.model.vocab_size, max_length=base.model.n_positions)
    reps = 3 if quick else 10
    scaling_runs = []
    for m, width in ((1, 1), (4, 2), (16, 4)):
        cfg = base.model_copy(update={"model": base.model.model_copy(update={"n_embd": base.model.n_embd * width})})
        registry = save_generations(workdir / f"x{m}" / "models", cfg, tokenizer)
        times = time_reloads(registry, reps)
        scaling_runs.append(median(times))
        if m == 1:
            hot = times
            path = registry.path(0)
            load_pretrained(path)
            warm_load = []
            for _ in range(reps):
                t = time.perf_counter()
                load_pretrained(path)
                warm_load.append(time.perf_counter() - t)
            cold = cold_start(path, 1 if quick else 3)
    scaling = growth([1, 4, 16], scaling_runs)
    say(
        f"[reload] hot reload {median(hot) * 1000:.0f} ms median (target <= 1000 ms); "
        f"cold start in a fresh process {median(cold):.2f} s; "
        f"load_pretrained in a warm process {median(warm_load) * 1000:.0f} ms"
    )
    say(
        f"[reload] reload at 1x/4x/16x parameters: {', '.join(f'{s * 1000:.0f} ms' for s in scaling_runs)} "
        f"-> {scaling['growth']} (exponent {scaling['exponent']})"
    )
    rec.figures = {
        "model": {"n_layer": base.model.n_layer, "n_embd": base.model.n_embd, "vocab": len(tokenizer)},
        "hot_reload_ms": {"median": round(median(hot) * 1000, 1), "max": round(max(hot) * 1000, 1), "runs": len(hot)},
        "cold_start_process_s": {"median": round(median(cold), 3), "runs": len(cold)},
        "load_pretrained_warm_process_ms": round(median(warm_load) * 1000, 1),
        "speedup_vs_cold_start": round(median(cold) / median(hot), 1),
        "target_ms": 1000,
        "scaling_model_size": {
            **scaling,
            "note": "sizes are parameter multiples of the layer weights (width 1x, 2x, 4x)",
        },
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    quick = quick_flag(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        rec = run(quick, Path(tmp))
    say(f"[reload] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
