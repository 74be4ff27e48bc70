"""Sandbox verdicts: warm pool and one-shot, per backend, against bare ``python -c`` and ``docker run``.

Two trivial candidates, both with a real pass verdict (nonce, checks counted):

* ``answer``: a direct answer checked against the expected one (what the task
  judge sends for answer-type tasks); no candidate process starts, so its
  latency is the sandbox's own overhead per verdict;
* ``program``: ``print(42)`` in ``main.py``, compiled and run, stdout checked;
  one child process per verdict, forked from the sandbox's launcher (no new
  interpreter starts; the baseline below is what one would cost).

Per backend that works here (docker, bwrap, process): the warm pool
(``pool_size`` 2, started before timing) gives the median latency of sequential
verdicts and the throughput of two client threads; one-shot (``pool_size`` 0)
gives the median latency of a fresh sandbox per verdict. Baselines in the same
run: bare ``python -I -S -c 'print(42)'`` (the sandbox's interpreter; sequential
latency and two at a time) and ``docker run --rm --network none`` of the sandbox
image. Warm overhead: the answer verdict's latency, and the program verdict's
latency minus the bare interpreter's.

Cost growth: warm throughput batches of 1x, 4x and 16x jobs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Recorder, growth, median, quick_flag, say

NAME = "sandbox"


def jobs():
    from selfloop.sandbox import Job

    return {
        "answer": Job(answer="42", expected="42"),
        "program": Job(files={"main.py": "print(42)\n"}, entry="main.py", expected="42"),
    }


def _check(verdict) -> None:
    if not verdict.passed:
        raise RuntimeError(f"a trivial candidate did not pass: {verdict.status}: {verdict.reason}")


def sequential_ms(sandbox, job, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _check(sandbox.run(job))
        times.append((time.perf_counter() - t) * 1000)
    return times


def throughput(sandbox, job, n: int, threads: int) -> dict[str, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for verdict in pool.map(lambda _: sandbox.run(job), range(n)):
            _check(verdict)
    seconds = time.perf_counter() - start
    return {"jobs": n, "seconds": round(seconds, 3), "verdicts_per_s": round(n / seconds, 1)}


def bare_python(python: str, n: int) -> dict[str, Any]:
    argv = [python, "-I", "-S", "-c", "print(42)"]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append((time.perf_counter() - t) * 1000)
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: subprocess.run(argv, capture_output=True, check=True), range(n)))
    return {"median_ms": round(median(times), 2), "runs_per_s_2_parallel": round(n / (time.perf_counter() - start), 1)}


def docker_run(image: str, n: int) -> dict[str, Any] | None:
    docker = shutil.which("docker")
    if not docker:
        return None
    argv = [docker, "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-I", "-S", "-c", "print(42)"]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0 or r.stdout.strip() != "42":
            return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(median(times), 1)}


def bench_backend(name: str, quick: bool) -> dict[str, Any]:
    from selfloop.config import SandboxConfig
    from selfloop.sandbox import Sandbox
    from selfloop.sandbox.backends import make_backend
    from selfloop.sandbox.worker import SandboxUnavailable

    try:
        make_backend(name, SandboxConfig(backend=name)).close()
    except (SandboxUnavailable, Exception) as e:  # noqa: BLE001 - any reason a backend cannot run is reported
        return {"unavailable": str(e)}
    out: dict[str, Any] = {}
    n_seq, n_tp, n_one = (10, 30, 3) if quick else (60, 600, 15)
    with Sandbox(SandboxConfig(backend=name, pool_size=2)) as warm:
        warm.warm()
        for kind, job in jobs().items():
            sequential_ms(warm, job, 3)  # first jobs on a worker warm its caches
            lat = sequential_ms(warm, job, n_seq)
            tp = throughput(warm, job, n_tp if kind == "answer" else n_tp // 4, 2)
            out[f"warm_{kind}"] = {
                "median_ms": round(median(lat), 2),
                "p90_ms": round(sorted(lat)[int(0.9 * len(lat))], 2),
                **tp,
            }
    with Sandbox(SandboxConfig(backend=name, pool_size=0)) as oneshot:
        for kind, job in jobs().items():
            lat = sequential_ms(oneshot, job, n_one)
            out[f"oneshot_{kind}"] = {"median_ms": round(median(lat), 1), "runs": n_one}
    return out


def run(quick: bool) -> Recorder:
    from selfloop.config import SandboxConfig
    from selfloop.sandbox import Sandbox
    from selfloop.sandbox.runtime import interpreter

    rec = Recorder(NAME, quick, "python -m bench.sandbox_speed" + (" --quick" if quick else ""))
    cfg = SandboxConfig()
    python = interpreter(cfg.python).path
    bare = bare_python(python, 10 if quick else 60)
    say(f"[sandbox] bare python -c: {bare['median_ms']} ms median, {bare['runs_per_s_2_parallel']}/s two at a time")
    drun = docker_run(cfg.image, 2 if quick else 8)
    if drun:
        say(f"[sandbox] docker run --rm: {drun}")
    backends = {}
    for name in ("docker", "bwrap", "process"):
        found = bench_backend(name, quick)
        backends[name] = found
        if "unavailable" in found:
            say(f"[sandbox] {name}: unavailable ({found['unavailable']})")
            continue
        wa, wp = found["warm_answer"], found["warm_program"]
        found["warm_overhead_ms"] = {
            "answer": wa["median_ms"],
            "program_minus_bare_python": round(wp["median_ms"] - bare["median_ms"], 2),
        }
        say(
            f"[sandbox] {name}: warm answer {wa['verdicts_per_s']}/s (median {wa['median_ms']} ms), "
            f"warm program {wp['verdicts_per_s']}/s (median {wp['median_ms']} ms, "
            f"{found['warm_overhead_ms']['program_minus_bare_python']} ms over bare python); "
            f"one-shot answer {found['oneshot_answer']['median_ms']} ms, "
            f"program {found['oneshot_program']['median_ms']} ms"
        )

    # Cost growth on the backend `auto` picks, answer jobs, warm pool. A warm worker is
    # replaced after `recycle_after` jobs, so the pool is first run through one lifetime of
    # both workers: from then on every size pays replacements in proportion to its jobs (the
    # 1x batch of a freshly warmed pool would pay none, which read as superlinear growth).
    sizes = [1, 4, 16]
    pool_cfg = SandboxConfig(pool_size=2)
    base = 10 if quick else 2 * pool_cfg.recycle_after
    with Sandbox(pool_cfg) as sb:
        sb.warm()
        chosen = sb.backend_name
        if not quick:
            throughput(sb, jobs()["answer"], pool_cfg.pool_size * pool_cfg.recycle_after, 2)
        runs = [throughput(sb, jobs()["answer"], base * m, 2) for m in sizes]
    scaling = growth(sizes, [r["seconds"] for r in runs])
    secs = ", ".join(f"{r['seconds']:.3f}s" for r in runs)
    say(
        f"[sandbox] {chosen} warm batches of 1x/4x/16x jobs: {secs} -> {scaling['growth']}"
        f" (exponent {scaling['exponent']})"
    )
    rec.figures = {
        "bare_python": bare,
        "docker_run": drun,
        "backends": backends,
        "targets": {"verdicts_per_s": 150, "warm_overhead_ms": 10, "oneshot_bwrap_ms": 60},
        "scaling_jobs": {**scaling, "backend": chosen},
    }
    return rec


def main(argv: list[str] | None = None) -> int:
    quick = quick_flag(argv)
    rec = run(quick)
    say(f"[sandbox] wrote {rec.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
