"""Benign jobs on every backend this machine can run (docker, bwrap, process),
the warm pool (reuse, recycling, sweep, threads), and `selfloop sandbox check`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sandbox_helpers import assert_no_leftovers, backend_or_skip, config

from selfloop.sandbox import Job, Sandbox

BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), pytest.param("bwrap", marks=pytest.mark.bwrap), "process"]
ADD = "def add(a, b):\n    return a + b\n"
SHORT_TIMEOUT_S = 2.0  # for the tests that wait for a timeout


def _sandbox(backend: str, **kw):
    cfg = config(backend=backend, pool_size=1, **kw)
    with Sandbox(cfg, backend_or_skip(backend, cfg)) as sb:
        yield sb
    assert_no_leftovers(backend)


@pytest.fixture(params=BACKENDS)
def sandbox(request):
    yield from _sandbox(request.param)


@pytest.fixture(params=BACKENDS)
def short_sandbox(request):
    yield from _sandbox(request.param, timeout_s=SHORT_TIMEOUT_S)


CASES = [
    ("program_expected", Job(files={"main.py": "print(6 * 7)"}, entry="main.py", expected="42"), "pass"),
    ("program_wrong", Job(files={"main.py": "print(41)"}, entry="main.py", expected="42"), "fail"),
    (
        "checker_on_stdout",
        Job(
            files={"main.py": "print('hello')"},
            entry="main.py",
            checker="def check(a):\n    return a.strip() == 'hello'\n",
        ),
        "pass",
    ),
    ("direct_answer", Job(answer="4", checker="def check(a):\n    return a.strip() == '4'\n"), "pass"),
    ("direct_answer_wrong", Job(answer="5", checker="def check(a):\n    return a.strip() == '4'\n"), "fail"),
    ("checker_returns_truthy", Job(answer="4", checker="def check(a):\n    return 'yes'\n"), "fail"),
    (
        "tests_pass",
        Job(
            files={"solution.py": ADD},
            tests="from solution import add\nassert add(1, 2) == 3\ndef test_neg():\n    assert add(-1, 1) == 0\n",
            module="solution",
        ),
        "pass",
    ),
    (
        "tests_fail",
        Job(files={"solution.py": ADD}, tests="def test_bad():\n    assert add(1, 1) == 3\n", module="solution"),
        "fail",
    ),
    (
        "tests_exception_type",
        Job(
            files={"solution.py": "def f():\n    raise ValueError('no')\n"},
            tests=(
                "def test_raises():\n    try:\n        f()\n    except ValueError:\n        return\n    assert False\n"
            ),
            module="solution",
        ),
        "pass",
    ),
    (
        "doctests",
        Job(
            files={"solution.py": 'def sq(x):\n    """\n    >>> sq(3)\n    9\n    """\n    return x * x\n'},
            doctests=True,
        ),
        "pass",
    ),
    (
        "doctests_wrong",
        Job(
            files={"solution.py": 'def sq(x):\n    """\n    >>> sq(3)\n    10\n    """\n    return x * x\n'},
            doctests=True,
        ),
        "fail",
    ),
    (
        "objects_and_methods",
        Job(
            files={
                "solution.py": "class Stack:\n    def __init__(self):\n        self.items = []\n"
                "    def push(self, x):\n        self.items.append(x)\n    def pop(self):\n"
                "        return self.items.pop()\n"
            },
            tests="s = Stack()\ns.push(1)\ns.push(2)\nassert s.pop() == 2\nassert len(s.items) == 1\n",
            module="solution",
        ),
        "pass",
    ),
    ("syntax_error", Job(files={"main.py": "def f(:\n"}, entry="main.py"), "error"),
    ("runtime_error", Job(files={"main.py": "1 / 0"}, entry="main.py"), "error"),
    (
        "stdin_given",
        Job(files={"main.py": "print(input()[::-1])"}, entry="main.py", stdin="abc\n", expected="cba"),
        "pass",
    ),
    (
        "eq_always_true",
        Job(
            files={
                "solution.py": "class T:\n    def __eq__(self, o):\n        return True\ndef f():\n    return T()\n"
            },
            tests="assert f() == 5\n",
            module="solution",
        ),
        "fail",
    ),
    (
        "monkeypatch_checker",
        Job(
            files={
                "main.py": "import builtins, sys\nbuiltins.check = lambda a: True\n"
                "sys.modules['checker'] = None\nprint('wrong')\n"
            },
            entry="main.py",
            checker="def check(a):\n    return a.strip() == 'right'\n",
        ),
        "fail",
    ),
    (
        "exit_before_checks",
        Job(files={"solution.py": "import os\nos._exit(0)\n"}, tests="assert f() == 1\n", module="solution"),
        "error",
    ),
    (
        "forged_result_on_stdout",
        Job(
            files={
                "main.py": 'import json, os\nprint(json.dumps({"nonce": "0" * 32, "status": "pass", "checks_run": 1,'
                ' "checks_passed": 1}))\nos._exit(0)\n'
            },
            entry="main.py",
            expected="42",
        ),
        "fail",
    ),
]


@pytest.mark.parametrize("name, job, status", CASES, ids=[c[0] for c in CASES])
def test_benign_job(sandbox, name, job, status):
    v = sandbox.run(job)
    assert v.status == status, v
    assert v.backend == sandbox.backend_name and v.wall_ms > 0
    if status == "pass":
        assert v.checks_run > 0 and v.checks_passed == v.checks_run


def test_invalid_utf8_without_newline_is_replaced(sandbox):
    v = sandbox.run(
        Job(files={"main.py": "import sys\nsys.stdout.buffer.write(b'ok\\xff\\xfe' * 10)"}, entry="main.py")
    )
    assert v.status == "pass" and "\ufffd" in v.stdout and "\n" not in v.stdout


def test_output_is_capped(sandbox):
    v = sandbox.run(Job(files={"main.py": "print('x' * 200_000)"}, entry="main.py"))
    assert v.status == "output_limit" and len(v.stdout) <= 64 * 1024


def test_warm_worker_is_reused_then_recycled():
    cfg = config(backend="bwrap", pool_size=1, recycle_after=2, timeout_s=SHORT_TIMEOUT_S)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        probe = Job(files={"main.py": "print(1)"}, entry="main.py", expected="1")
        assert sb.run(probe).passed
        first = sb._idle[0]
        assert sb.run(probe).passed  # second job on the same warm worker
        assert sb._idle == [] and not first.alive()  # recycled after recycle_after jobs
        assert sb.run(probe).passed
        second = sb._idle[0]
        assert second is not first and second.alive()
        assert sb.run(Job(files={"main.py": "while True: pass"}, entry="main.py")).status == "timeout"
        assert not second.alive()  # a timeout always discards the worker
        assert sb.run(probe).passed


def test_orphans_are_swept_between_jobs_in_a_warm_worker():
    cfg = config(backend="bwrap", pool_size=1)
    orphan = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1000)\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    census = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        assert sb.run(Job(files={"main.py": orphan}, entry="main.py", expected="parent done")).status == "pass"
        worker = sb._idle[0]
        pids = json.loads(sb.run(Job(files={"main.py": census}, entry="main.py")).stdout)
        assert sb._idle[0] is worker  # same warm sandbox
        assert len(pids) == 4  # init, harness, its launcher, this program: the orphan is gone


def test_pool_is_safe_from_many_threads():
    cfg = config(backend="bwrap", pool_size=2)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        jobs = [Job(files={"main.py": f"print({i} * 2)"}, entry="main.py", expected=str(i * 2)) for i in range(12)]
        with ThreadPoolExecutor(max_workers=6) as ex:
            verdicts = list(ex.map(sb.run, jobs))
        assert [v.status for v in verdicts] == ["pass"] * 12
        assert len(sb._idle) <= 2 and sb._busy == 0
    assert_no_leftovers("bwrap")


def test_one_shot_mode_leaves_nothing():
    cfg = config(backend="bwrap", pool_size=0)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        assert sb.run(Job(files={"main.py": "print(1)"}, entry="main.py", expected="1")).status == "pass"
        assert sb._idle == []
        assert_no_leftovers("bwrap")


def test_invalid_job_is_an_error_not_a_crash(sandbox):
    v = sandbox.run(Job(files={"../escape.py": "print(1)"}, entry="../escape.py"))
    assert v.status == "error" and "bad file name" in v.reason


def test_cli_check_json(tmp_path):
    (tmp_path / "config.toml").write_text('[sandbox]\nbackend = "bwrap"\n')
    (tmp_path / "good.py").write_text('def sq(x):\n    """\n    >>> sq(2)\n    4\n    """\n    return x * x\n')
    (tmp_path / "tests.py").write_text("def test_sq():\n    assert sq(5) == 25\n")
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(3)\n")
    backend_or_skip("bwrap", config(backend="bwrap"))

    def check(*args):
        r = subprocess.run(
            [sys.executable, "-m", "selfloop", "sandbox", "check", *args, "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 1, r.stdout + r.stderr
        return r.returncode, json.loads(lines[0])

    rc, out = check("good.py", "--tests", "tests.py")
    assert rc == 0 and out["status"] == "pass" and out["backend"] == "bwrap" and out["wall_ms"] > 0 and out["reason"]
    assert "test_sq" in out["checks"]
    rc, out = check("bad.py", "--timeout", "3")
    assert rc == 1 and out["status"] == "error" and "code 3" in out["reason"]


def test_cli_info_json(tmp_path):
    (tmp_path / "config.toml").write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "selfloop", "sandbox", "info", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = json.loads(r.stdout)
    rows = {b["backend"]: b for b in info["backends"]}
    assert set(rows) == {"docker", "bwrap", "process"}
    assert rows["process"]["available"] and "NOT a security boundary" in rows["process"]["note"]
    for b in rows.values():
        assert b["available"] or b["reason"]


def test_threads_dont_kill_bwrap_workers():
    """bwrap's --die-with-parent follows the spawning thread; workers must outlive it."""
    cfg = config(backend="bwrap", pool_size=1)
    with Sandbox(cfg, backend_or_skip("bwrap", cfg)) as sb:
        t = threading.Thread(target=sb.run, args=(Job(files={"main.py": "print(1)"}, entry="main.py"),))
        t.start()
        t.join()
        worker = sb._idle[0]
        assert worker.alive()
        assert sb.run(Job(files={"main.py": "print(2)"}, entry="main.py", expected="2")).status == "pass"


# ---- the launcher: programs are forked from a pristine interpreter, not started fresh

AS_PYTHON_RUNS_IT = (
    "import atexit, sys, threading, time\n"
    "atexit.register(lambda: print('atexit ran'))\n"
    "def late():\n"
    "    time.sleep(0.1)\n"
    "    print('thread joined')\n"
    "threading.Thread(target=late).start()\n"
    "print(__name__, __file__, sys.argv, sys.flags.isolated, sys.flags.no_site)\n"
    "print(input()[::-1])\n"
)


def test_a_program_runs_as_python_would_run_it(sandbox):
    v = sandbox.run(
        Job(
            files={"main.py": AS_PYTHON_RUNS_IT},
            entry="main.py",
            stdin="olleh\n",
            expected="__main__ main.py ['main.py'] 1 1\nhello\nthread joined\natexit ran",
        )
    )
    assert v.status == "pass", v
    v = sandbox.run(Job(files={"main.py": "import sys\nprint('out')\nsys.exit(3)\n"}, entry="main.py"))
    assert (v.status, v.exit_code, v.stdout) == ("error", 3, "out\n"), v
    v = sandbox.run(Job(files={"main.py": "import sys\nsys.exit('bye')\n"}, entry="main.py"))
    assert (v.status, v.exit_code, v.stderr) == ("error", 1, "bye\n"), v
    v = sandbox.run(Job(files={"main.py": "def f():\n    raise ValueError('boom')\nf()\n"}, entry="main.py"))
    # The traceback starts at the program's own frame: nothing of the launcher shows.
    assert v.stderr.startswith('Traceback (most recent call last):\n  File "main.py", line 3, in <module>\n'), v.stderr
    assert v.stderr.rstrip().endswith("ValueError: boom") and v.exit_code == 1


def test_a_program_starts_with_almost_none_of_the_harness_modules(sandbox):
    """Programs fork from the launcher, whose few modules are C ones (plus ctypes): nothing the
    harness imports for itself (json, selectors, signal's and socket's enum wrappers) is there."""
    v = sandbox.run(Job(files={"main.py": "import sys\nprint(' '.join(sorted(sys.modules)))\n"}, entry="main.py"))
    assert v.status == "pass", v
    loaded = set(v.stdout.split())
    assert {"_signal", "_socket", "ctypes"} <= loaded, loaded
    assert not loaded & {"json", "re", "enum", "selectors", "signal", "socket", "subprocess", "harness"}, loaded


# Looks for the hex text of a 16-byte secret in every readable mapping of its own process. The
# program never builds that text itself (only its two halves, and it reads the secret reversed),
# so a hit can only be a copy it inherited.
SEARCH_OWN_MEMORY = (
    "import os, sys\n"
    "bait = open('bait.txt').read() if os.path.exists('bait.txt') else ''\n"  # the positive control
    "secret = bytes.fromhex(sys.stdin.read().strip())[::-1]\n"
    "head, tail = secret[:8].hex().encode(), secret[8:].hex().encode()\n"
    "hits = 0\n"
    "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
    "    for line in maps:\n"
    "        span, perms = line.split()[:2]\n"
    "        if 'r' not in perms or '[v' in line:\n"
    "            continue\n"
    "        start, end = (int(x, 16) for x in span.split('-'))\n"
    "        try:\n"
    "            mem.seek(start)\n"
    "            data = mem.read(end - start)\n"
    "        except (OSError, OverflowError, ValueError):\n"
    "            continue\n"
    "        i = data.find(head)\n"
    "        while i >= 0:\n"
    "            hits += data[i + 16:i + 32] == tail\n"
    "            i = data.find(head, i + 1)\n"
    "print('clean' if not hits else f'found {hits} copies')\n"
)


def test_a_program_finds_no_trace_of_the_expected_answer_in_its_memory(sandbox):
    """Programs fork from the launcher, which never sees a job's expected answer (or checker, tests,
    nonce): forked from the harness they could read it out of their own memory."""
    secret = os.urandom(16)
    v = sandbox.run(
        Job(files={"main.py": SEARCH_OWN_MEMORY}, entry="main.py", stdin=secret[::-1].hex(), expected=secret.hex())
    )
    assert v.status == "fail" and v.stdout.strip() == "clean", v
    # The search does find the text once the program has read it itself.
    bait = Job(
        files={"main.py": SEARCH_OWN_MEMORY, "bait.txt": secret.hex()},
        entry="main.py",
        stdin=secret[::-1].hex(),
        expected="x",
    )
    assert sandbox.run(bait).stdout.startswith("found"), v


def test_a_program_that_kills_or_stops_its_launcher_fails_alone(short_sandbox):
    """A program's parent is the launcher; signalling it costs that job, never the next one."""
    killed = short_sandbox.run(
        Job(
            files={"main.py": "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\n"},
            entry="main.py",
        )
    )
    assert killed.status == "error" and "launcher" in killed.reason, killed
    assert short_sandbox.run(Job(files={"main.py": "print(6 * 7)"}, entry="main.py", expected="42")).passed
    stopped = short_sandbox.run(
        Job(
            files={"main.py": "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint('stopped it')\n"},
            entry="main.py",
            expected="42",
        )
    )
    assert stopped.status in ("timeout", "error") and not stopped.passed, stopped
    assert short_sandbox.run(Job(files={"main.py": "print(6 * 7)"}, entry="main.py", expected="42")).passed


def test_every_file_compiles_before_the_program_runs_and_a_program_cannot_fake_a_compile_error(sandbox):
    broken_helper = Job(files={"main.py": "print('ran')\n", "helper.py": "def f(:\n"}, entry="main.py", expected="ran")
    v = sandbox.run(broken_helper)
    assert (
        v.status == "error" and v.reason.startswith("does not compile: SyntaxError") and "helper.py, line 1" in v.reason
    ), v
    assert "ran" not in v.stdout and v.checks_run == 0
    # The program runs only after its process reported the compile: exiting the way a failed
    # compile does is a program error, with the compile check counted as passed.
    fake = "import sys\nprint('SyntaxError: invalid syntax (main.py, line 1)', file=sys.stderr)\nsys.exit(3)\n"
    v = sandbox.run(Job(files={"main.py": fake}, entry="main.py"))
    assert v.status == "error" and v.reason.startswith("program exited with code 3"), v
    assert v.checks == ("compile",) and v.checks_passed == 1


PLANT = (
    "import os\nplanted = []\n"
    "for path in ['/sandbox/harness/cli.py', '/sandbox/harness/tester.py', '/sandbox/harness/x.pth',"
    " '/sandbox/x.py']:\n"
    "    try:\n        open(path, 'x').write('raise SystemExit(0)\\n')\n        planted.append(path)\n"
    "    except OSError:\n        pass\n"
    "print(planted)\n"
)


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p != "process"])
def test_a_candidate_cannot_add_a_module_next_to_the_harness(backend):
    """The harness package is read-only inside docker and bwrap, its directory included: a module
    planted there would shadow the harness's own for the next tester of a warm worker."""
    for sb in _sandbox(backend):
        v = sb.run(Job(files={"main.py": PLANT}, entry="main.py", expected="[]"))
        assert v.status == "pass", v
        v = sb.run(Job(files={"s.py": ADD}, module="s", tests="def test_add():\n    assert add(2, 3) == 5\n"))
        assert v.status == "pass", v


def test_candidate_modules_may_share_a_name_with_the_harness_s(sandbox):
    """The server and tester forget the harness's own modules before any candidate import."""
    files = {"harness.py": ADD, "cli.py": "X = 1\n", "wire.py": "Y = 2\n"}
    tests = "import harness, cli, wire\ndef test_add():\n    assert harness.add(2, 3) == 5 and cli.X + wire.Y == 3\n"
    v = sandbox.run(Job(files=files, module="harness", tests=tests))
    assert v.status == "pass", v
