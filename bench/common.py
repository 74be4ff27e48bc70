"""Shared pieces of the benchmarks: the machine record, result files, and small statistics.

Every benchmark measures its baseline in the same process run (machines here are
shared and noisy, so only in-run ratios are comparable) and writes one JSON file
``bench/results/<name>.json`` holding its figures, the machine they came from,
the load around the run and the command that reproduces it.

Does not cover: what is measured (one module per benchmark).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The smoke test points this elsewhere so a CI run never overwrites real figures.
RESULTS = Path(os.environ.get("SELFLOOP_BENCH_RESULTS") or ROOT / "bench" / "results")


def machine() -> dict[str, Any]:
    """What the figures came from: CPU model, cores, memory, library versions, commit."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _git(*args: str) -> str | None:
    try:
        return (
            subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was)."""
    return [round(x, 2) for x in os.getloadavg()]


class Recorder:
    """Collects one benchmark's figures and writes them with their context."""

    def __init__(self, name: str, quick: bool, command: str):
        self.name = name
        self.quick = quick
        self.command = command
        self.started = time.time()
        self.load_before = load()
        self.figures: dict[str, Any] = {}

    def write(self, directory: Path = RESULTS) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "benchmark": self.name,
            "quick": self.quick,
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "load_before": self.load_before,
            "load_after": load(),
            "machine": machine(),
            "figures": self.figures,
        }
        path = directory / f"{self.name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def growth(sizes: Sequence[float], costs: Sequence[float]) -> dict[str, Any]:
    """Least-squares exponent k of cost ~ size^k on a log-log scale, and what it means.

    k <= 1.15 is called linear or better (sublinear below 0.85): the 1x point of a
    fast benchmark carries fixed costs, so a little noise above 1 is not growth.
    """
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(c, 1e-9)) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    label = "sublinear" if k < 0.85 else "linear" if k <= 1.15 else "superlinear"
    return {"sizes": list(sizes), "costs": [round(c, 4) for c in costs], "exponent": round(k, 3), "growth": label}


def say(msg: str) -> None:
    print(msg, flush=True)


def quick_flag(argv: Sequence[str] | None) -> bool:
    args = list(sys.argv[1:] if argv is None else argv)
    return "--quick" in args
