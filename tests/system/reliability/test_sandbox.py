"""Reliability: the sandbox under load. Many jobs at once from many threads, hostile ones
among them (fork and memory bombs, endless loops, output floods, orphans, kill -1);
healthy jobs still get exactly the right verdict, hostile ones never pass, and nothing
is left behind: no sandbox process, no container, no temp dir.

Marked hostile: `make test` runs it inside a pid namespace of its own.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sandbox_helpers import assert_no_leftovers, backend_or_skip, config

from selfloop.sandbox import Job, Sandbox

pytestmark = pytest.mark.hostile
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), pytest.param("bwrap", marks=pytest.mark.bwrap)]
TIMEOUT = 3.0


def prog(src: str, **kw) -> Job:
    return Job(files={"main.py": src}, entry="main.py", **kw)


HOSTILE: dict[str, tuple[Job, set[str]]] = {
    "fork_bomb": (
        prog("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
        {"timeout", "error", "memory"},
    ),
    "spin": (prog("while True:\n    pass\n"), {"timeout"}),
    "memory": (prog("x = []\nwhile True:\n    x.append(bytearray(10**7))\n"), {"memory", "error"}),
    "flood": (prog("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"), {"output_limit"}),
    "orphan": (
        prog(
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\nprint('left one behind')\n",
            expected="nothing",
        ),
        {"fail", "error"},
    ),
    "kill_all": (prog("import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(5)\n"), {"error"}),
    "disk": (
        prog(
            "i = 0\ntry:\n    while True:\n        open(f'f{i}', 'wb').write(b'x' * 2**20)\n        i += 1\n"
            "except OSError:\n    print('full')\n",
            expected="room",
        ),
        {"fail", "error"},
    ),
}


def healthy(i: int) -> tuple[Job, bool]:
    """A job with a known verdict, of three kinds (program, tests, checker); every other round is wrong."""
    wrong = (i // 3) % 2 == 1
    off = 1 if wrong else 0
    kind = i % 3
    if kind == 0:
        return prog(f"print({i} * {i})", expected=str(i * i + off)), not wrong
    if kind == 1:
        return Job(
            files={"solution.py": f"def f(x):\n    return x + {i}\n"},
            module="solution",
            tests=f"def test_f():\n    assert f(1) == {i + 1 + off}\n",
        ), not wrong
    answer = "ab" * i + ("x" if wrong else "")
    return prog(
        f"print('{'ab' * i}')", checker=f"def check(answer):\n    return answer.strip() == {answer!r}\n"
    ), not wrong


def sandbox_temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("selfloop-sandbox-*")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_concurrent_jobs_with_hostile_ones_get_right_verdicts_and_leak_nothing(backend):
    cfg = config(backend=backend, timeout_s=TIMEOUT, pool_size=3, memory_mb=256, pids=32)
    temp_before = sandbox_temp_dirs()
    threads_before = threading.active_count()
    work: list[tuple[str, Job, object]] = []
    for i in range(24):
        job, passes = healthy(i)
        work.append((f"healthy-{i}", job, passes))
        if i % 3 == 0:
            name = sorted(HOSTILE)[(i // 3) % len(HOSTILE)]
            work.append((name, *HOSTILE[name]))
    with Sandbox(cfg, backend_or_skip(backend, cfg)) as sb, ThreadPoolExecutor(max_workers=10) as pool:
        verdicts = list(pool.map(lambda w: sb.run(w[1]), work))
    for (name, _, expect), v in zip(work, verdicts):
        if name.startswith("healthy"):
            assert v.passed == expect, (name, v)
            if expect:
                assert v.checks_run >= 1 and v.checks_passed == v.checks_run, (name, v)
            else:
                assert v.status == "fail", (name, v)
        else:
            assert v.status in expect and not v.passed, (name, v)
            assert v.wall_ms <= (TIMEOUT + 2.0) * 1000, (name, v)  # the deadline holds under load too
    assert_no_leftovers(backend)
    assert sandbox_temp_dirs() <= temp_before
    assert threading.active_count() <= threads_before + 1  # no reader threads left running
    assert os.path.exists(tempfile.gettempdir())
