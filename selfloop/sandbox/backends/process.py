"""The process backend: the harness as a plain child process. NOT a security boundary.

It gives each job a new session, rlimits (CPU, address space, file size, open
files) and, where the kernel permits, an empty network namespace (``unshare -n``,
or ``unshare -rn`` without root). It shares the host's filesystem, users and
pid namespace, so hostile code can read what this user can read and signal this
user's processes. Use it for development on machines with neither Docker nor
bubblewrap; `auto` picks it last and says so.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile

from selfloop.config import SandboxConfig
from selfloop.sandbox.backends.base import Backend, PopenWorker, harness_args
from selfloop.sandbox.runtime import harness_dir, interpreter
from selfloop.sandbox.worker import Worker

log = logging.getLogger(__name__)

WARNING = "process backend: NOT a security boundary (same filesystem, users and pids as the daemon)"


@functools.cache
def netns_prefix() -> tuple[str, ...]:
    """The `unshare` invocation that gives a child an empty network namespace here, or () if none works."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    for prefix in ((exe, "-n"), (exe, "-rn")):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


class ProcessBackend(Backend):
    name = "process"
    pidns = False

    def __init__(self, cfg: SandboxConfig):
        super().__init__(cfg)
        self.python = interpreter(cfg.python)
        self.prefix = netns_prefix()
        net = "empty network namespace" if self.prefix else "NO network isolation (unshare not permitted)"
        self.isolation = f"NOT a security boundary: new session + rlimits, {net}"
        log.warning("%s; %s", WARNING, net)

    def start_worker(self, serve: bool) -> Worker:
        scratch = tempfile.mkdtemp(prefix="selfloop-sandbox-")
        main = str(harness_dir() / "__main__.py")
        argv = [*self.prefix, self.python.path, "-I", "-S", main, *harness_args(serve, False, scratch)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        return PopenWorker(self.name, argv, self.limits(), cleanup=scratch, env=env, cwd=scratch)
