"""Run every benchmark, each in its own process, then print the figures against their targets.

A benchmark that fails is reported and the others still run; the exit code is 1
if any failed. ``bench.selfimprove`` (owned by the self-improvement work) runs
last when it exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

from bench.common import RESULTS, say
from bench.summary import render

# Module -> result name, in the order they run (cheap and independent first).
BENCHMARKS = {
    "ingest_speed": "ingest",
    "sandbox_speed": "sandbox",
    "generation": "generation",
    "reload": "reload",
    "train_speed": "train",
    "end_to_end": "end_to_end",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke): figures exist, numbers mean little")
    p.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    args = p.parse_args(argv)
    flags = ["--quick"] if args.quick else []
    failed = []
    for module in args.only or BENCHMARKS:
        say(f"== bench.{module} {' '.join(flags)}")
        started = time.time()
        rc = subprocess.call([sys.executable, "-m", f"bench.{module}", *flags])
        say(f"== bench.{module}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.time() - started:.0f} s")
        if rc != 0:
            failed.append(module)
    if not args.only:
        if importlib.util.find_spec("bench.selfimprove") is None:
            say("== bench.selfimprove: not present yet, skipped")
        else:
            say(f"== bench.selfimprove {' '.join(flags)}")
            code = f"import sys; from bench.selfimprove import main; sys.exit(main({flags!r}))"
            rc = subprocess.call([sys.executable, "-c", code])
            if rc != 0:
                failed.append("selfimprove")
    say("")
    say(render(RESULTS, [BENCHMARKS[m] for m in (args.only or BENCHMARKS)]))
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
