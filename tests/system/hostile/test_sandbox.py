"""Hostile candidates on the backends with their own pid namespace (docker, bwrap).

Run inside a pid namespace of its own (`make test` does
``unshare --pid --fork --mount-proc --kill-child pytest -m hostile``), so a
containment bug cannot signal or starve anything outside. The process backend
never runs these: it is not a security boundary.

Every case must end with an expected status within the wall limit + 1 s, leave
no sandbox process or container behind, leave the host untouched, and never pass.
"""

from __future__ import annotations

import os
import socket

import pytest
from sandbox_helpers import assert_no_leftovers, backend_or_skip, config

from selfloop.sandbox import Job, Sandbox
from selfloop.sandbox.runtime import harness_files

pytestmark = pytest.mark.hostile
TIMEOUT = 2.0
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), pytest.param("bwrap", marks=pytest.mark.bwrap)]
SECRET = "s3cr3t-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Host-side bait: a world-readable secret file, a secret in the environment, a loopback listener."""
    root = tmp_path_factory.mktemp("host")
    os.chmod(root, 0o755)
    (root / "secret.txt").write_text(SECRET)
    os.chmod(root / "secret.txt", 0o644)
    os.environ["SELFLOOP_TEST_SECRET"] = SECRET
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    yield {"dir": root, "port": listener.getsockname()[1], "listener": listener}
    listener.close()
    os.environ.pop("SELFLOOP_TEST_SECRET", None)


def prog(src: str, **kw) -> Job:
    return Job(files={"main.py": src}, entry="main.py", **kw)


def cases(host) -> dict[str, tuple[Job, set[str]]]:
    d, port = host["dir"], host["port"]
    return {
        "infinite_loop": (prog("while True:\n    pass\n"), {"timeout"}),
        "sleep_forever": (prog("import time\ntime.sleep(10**6)\n"), {"timeout"}),
        "sigterm_ignored": (
            prog(
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n"
            ),
            {"timeout"},
        ),
        "memory_growth": (prog("x = []\nwhile True:\n    x.append(bytearray(10**7))\n"), {"memory"}),
        "fork_flood": (
            prog("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
            {"timeout", "error", "memory"},
        ),
        "thread_flood": (
            prog("import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(100,)).start()\n"),
            {"error", "memory", "timeout"},
        ),
        "double_fork_orphan": (
            prog(
                "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                "        time.sleep(1000)\n    os._exit(0)\nprint('parent done')\n",
                expected="other",
            ),
            {"fail"},
        ),
        "network": (
            prog(
                "import socket\nleaks = []\n"
                f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
                "    try:\n        socket.create_connection(addr, timeout=0.5).close()\n        leaks.append(addr)\n"
                "    except OSError:\n        pass\n"
                "try:\n    socket.getaddrinfo('example.com', 80)\n    leaks.append('dns')\nexcept OSError:\n    pass\n"
                "print('isolated' if not leaks else leaks)\n",
                expected="leaky",
            ),
            {"fail"},
        ),
        "read_host_files_and_env": (
            prog(
                "import os, glob\nfound = []\n"
                f"for p in [{str(d / 'secret.txt')!r}, '/etc/shadow', '/proc/1/environ', '/proc/self/environ']"
                " + glob.glob('/proc/*/environ'):\n"
                "    try:\n        found.append(open(p, 'rb').read().decode('latin-1'))\n    except OSError:\n"
                "        pass\n"
                "print(repr(dict(os.environ)))\nprint(found)\n",
                expected="nothing",
            ),
            {"fail"},
        ),
        "write_outside_scratch": (
            prog(
                f"targets = [{str(d / 'outside.txt')!r}, '/usr/evil', '/sandbox/harness.py', '/sandbox/harness.pyc',"
                " '/etc/passwd', '/evil', '/sandbox/harness/cli.py', '/sandbox/harness/__main__.py',"
                " '/sandbox/harness/__main__.pyc']\n"
                "for t in targets:\n    try:\n        open(t, 'a').write('pwned')\n    except OSError:\n        pass\n",
                expected="x",
            ),
            {"fail"},
        ),
        "disk_fill": (
            prog(
                "i = 0\ntry:\n    while True:\n        open(f'f{i}', 'wb').write(b'x' * 2**20)\n        i += 1\n"
                "except OSError:\n    print('full')\n",
                expected="nope",
            ),
            {"fail", "error"},
        ),
        "huge_stdout": (prog("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"), {"output_limit"}),
        "invalid_utf8_no_newline": (
            prog("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\xfd' * 5000)\n", expected="x"),
            {"fail"},
        ),
        "fd_exhaustion": (
            prog(
                "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\nexcept OSError:\n"
                "    print(len(fs))\n",
                expected="many",
            ),
            {"fail"},
        ),
        "kill_parent": (
            prog("import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\n"),
            {"error"},
        ),
        "kill_minus_one": (prog("import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(5)\n"), {"error"}),
        "read_stdin": (
            prog("import sys\ndata = sys.stdin.read()\nprint(len(data), data)\n", expected="the job"),
            {"fail"},
        ),
        "compile_bomb": (prog("x = 1" + " + 1" * 300_000 + "\n"), {"error", "memory", "timeout"}),
        "exit_0_before_checks": (
            Job(files={"solution.py": "import os\nos._exit(0)\n"}, tests="assert f() == 1\n", module="solution"),
            {"error"},
        ),
        "eq_always_true": (
            Job(
                files={
                    "solution.py": "class T:\n    def __eq__(self, o):\n        return True\n"
                    "    __hash__ = object.__hash__\ndef f():\n    return T()\n"
                },
                tests="def test_eq():\n    assert f() == 42\n",
                module="solution",
            ),
            {"fail"},
        ),
        "monkeypatch_checker": (
            prog(
                "import builtins, sys\nbuiltins.check = lambda a: True\nsys.modules['checker'] = None\n"
                "print('wrong')\n",
                checker="def check(answer):\n    return answer.strip() == 'right'\n",
            ),
            {"fail"},
        ),
        "forge_result_channel": (
            prog(
                "import json, os\n"
                "line = json.dumps({'nonce': '0' * 32, 'status': 'pass', 'checks_run': 1, 'checks_passed': 1}) + '\\n"
                "'\n"
                "for pid in ['1', str(os.getppid())] + os.listdir('/proc'):\n"
                "    for fd in ('1', '2'):\n        try:\n            with open(f'/proc/{pid}/fd/{fd}', 'w') as f:\n"
                "                f.write(line)\n        except (OSError, ValueError):\n            pass\n"
                "print('wrong')\n",
                expected="right",
            ),
            {"fail", "error"},
        ),
    }


CASE_NAMES = [
    "infinite_loop",
    "sleep_forever",
    "sigterm_ignored",
    "memory_growth",
    "fork_flood",
    "thread_flood",
    "double_fork_orphan",
    "network",
    "read_host_files_and_env",
    "write_outside_scratch",
    "disk_fill",
    "huge_stdout",
    "invalid_utf8_no_newline",
    "fd_exhaustion",
    "kill_parent",
    "kill_minus_one",
    "read_stdin",
    "compile_bomb",
    "exit_0_before_checks",
    "eq_always_true",
    "monkeypatch_checker",
    "forge_result_channel",
]


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request):
    cfg = config(backend=request.param, timeout_s=TIMEOUT, pool_size=0)
    with Sandbox(cfg, backend_or_skip(request.param, cfg)) as sb:
        yield sb


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile(sandbox, host, name):
    job, expected = cases(host)[name]
    harness_before = harness_files()
    v = sandbox.run(job)
    assert v.status in expected, v
    assert not v.passed
    # Correctness bound, not a performance figure: the deadline is enforced.
    assert v.wall_ms <= (TIMEOUT + 1.0) * 1000, v
    assert_no_leftovers(sandbox.backend_name)
    assert SECRET not in v.stdout + v.stderr + v.reason
    assert not (host["dir"] / "outside.txt").exists()
    assert harness_files() == harness_before
    with pytest.raises(BlockingIOError):
        host["listener"].accept()  # nothing ever connected to the host's loopback
    if name == "network":
        assert v.stdout.strip() == "isolated"
    if name == "invalid_utf8_no_newline":
        assert "\ufffd" in v.stdout and "\n" not in v.stdout
    if name == "fd_exhaustion":
        assert int(v.stdout.strip()) < 64
    if name == "read_stdin":
        assert v.stdout.strip() == "0" and "nonce" not in v.stdout
    if name == "disk_fill" and v.status == "fail":
        assert v.stdout.strip() == "full"


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_pool_survives_hostile_jobs(backend, host):
    cfg = config(backend=backend, timeout_s=TIMEOUT, pool_size=1)
    with Sandbox(cfg, backend_or_skip(backend, cfg)) as sb:
        for name in ("kill_minus_one", "fork_flood", "double_fork_orphan", "memory_growth"):
            job, expected = cases(host)[name]
            assert sb.run(job).status in expected
            assert sb.run(prog("print(6 * 7)", expected="42")).status == "pass"
    assert_no_leftovers(backend)
