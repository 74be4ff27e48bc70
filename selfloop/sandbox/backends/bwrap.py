"""The bubblewrap backend: Linux namespaces without a container engine.

Each worker is ``bwrap --unshare-all`` with read-only binds of the Python runtime only, the harness fed from pipes,
a sized tmpfs scratch, a read-only root and a non-root uid (see ``bwrap_argv``). Started as root, bwrap runs as a
random unprivileged host uid per worker, so the sandbox owns no host file, signals no host process and is bounded by
RLIMIT_NPROC.
"""

from __future__ import annotations

import fcntl
import functools
import os
import secrets
import shutil
import subprocess

from selfloop.config import SandboxConfig
from selfloop.sandbox.backends.base import Backend, PopenWorker, harness_args
from selfloop.sandbox.job import Limits
from selfloop.sandbox.runtime import Interpreter, compiled_harness, harness_files, interpreter, package_digest
from selfloop.sandbox.worker import SandboxUnavailable, Worker

# Host uids for root-started sandboxes: far above any real account, below 2**31.
UID_BASE = 2_000_000
UID_SPAN = 1_000_000
INNER_UID = 10001
HARNESS_DIR = "/sandbox/harness"


def runtime_binds(python: Interpreter) -> list[str]:
    """Read-only binds (or symlinks, mirroring merged-/usr hosts) of what the interpreter needs."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = os.path.realpath(python.prefix)
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        args += ["--ro-bind", prefix, prefix]
    return args


def bwrap_argv(bwrap: str, python: Interpreter, harness_fds: dict[str, int], limits: Limits, serve: bool) -> list[str]:
    """`harness_fds`: each harness file's name -> the descriptor bwrap reads it from.

    ``--unshare-all`` (user, pid, net, ipc, uts, cgroup namespaces) with
    ``--die-with-parent --new-session --clearenv``, read-only binds of the Python runtime
    only (no /home, /root, /etc, /work), the harness package's files bound from pipes
    (``--ro-bind-data``, one each, so no host path to them is needed), a sized tmpfs as
    scratch, a fresh /proc and a minimal /dev, the rest of the root read-only (no file
    can be added next to the harness's), and a non-root uid.
    """
    scratch_bytes = str(limits.file_mb * 1024 * 1024)
    main = "__main__.pyc" if "__main__.pyc" in harness_fds else "__main__.py"
    files = [arg for name, fd in harness_fds.items() for arg in ("--ro-bind-data", str(fd), f"{HARNESS_DIR}/{name}")]
    return [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        *runtime_binds(python),
        "--dir",
        HARNESS_DIR,
        *files,
        "--size",
        scratch_bytes,
        "--tmpfs",
        "/scratch",
        "--size",
        str(16 * 1024 * 1024),
        "--tmpfs",
        "/tmp",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # The root tmpfs and the directories made on it belong to the sandbox's uid: read-only, or a
        # candidate could add a module next to the harness's (a cli.py would shadow cli.pyc).
        "--remount-ro",
        "/",
        "--uid",
        str(INNER_UID),
        "--gid",
        str(INNER_UID),
        "--chdir",
        "/scratch",
        python.path,
        "-I",
        "-S",
        f"{HARNESS_DIR}/{main}",
        *harness_args(serve, True, "/scratch"),
    ]


def user_task_count(uid: int) -> int:
    """Processes and threads of `uid` right now (RLIMIT_NPROC counts both)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


@functools.cache
def _probe(bwrap: str, python: Interpreter, as_root: bool) -> str | None:
    """None when a trivial sandbox starts here, else bwrap's complaint."""
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        *runtime_binds(python),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--uid",
        str(INNER_UID),
        python.path,
        "-I",
        "-S",
        "-c",
        "pass",
    ]
    kw = {"user": UID_BASE, "group": UID_BASE, "extra_groups": []} if as_root else {}
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bwrap failed to run: {e}"
    if r.returncode != 0:
        return f"bwrap cannot create namespaces here: {r.stderr.strip()[:300] or f'exit code {r.returncode}'}"
    return None


class BwrapBackend(Backend):
    """When the daemon runs as root, bwrap itself is started as a random unprivileged host
    uid (one per worker): the sandbox then owns no host file, cannot signal any host
    process, and RLIMIT_NPROC (which the kernel counts per real uid and does not enforce
    for root) bounds its process count. As a normal user the worker runs as that user,
    and the process limit is set above the user's current count.
    """

    name = "bwrap"
    pidns = True
    isolation = "namespaces (user, pid, net, ipc, uts, cgroup) + rlimits, read-only runtime, tmpfs scratch, non-root"

    def __init__(self, cfg: SandboxConfig):
        super().__init__(cfg)
        bwrap = shutil.which("bwrap")
        if not bwrap:
            raise SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")
        self.bwrap = bwrap
        self.python = interpreter(cfg.python)
        self.as_root = os.geteuid() == 0
        problem = _probe(bwrap, self.python, self.as_root)
        if problem:
            raise SandboxUnavailable(problem)
        # The harness goes in compiled by the sandbox's own interpreter (the sources if that fails):
        # every sandbox start then skips compiling it.
        self.harness = compiled_harness(self.python.path) or harness_files()

    def harness_digest(self) -> str:
        return package_digest(self.harness)  # the harness hashes the files it runs from

    def start_worker(self, serve: bool) -> Worker:
        base = self.limits().to_dict()
        if self.as_root:
            uid: int | None = UID_BASE + secrets.randbelow(UID_SPAN)
            kw = {"user": uid, "group": uid, "extra_groups": []}
            limits = Limits(**{**base, "nproc": self.cfg.pids})
        else:
            uid, kw = None, {}
            limits = Limits(**{**base, "nproc": self.cfg.pids + user_task_count(os.getuid())})
        fds: dict[str, int] = {}
        try:
            for name, data in self.harness.items():
                read_fd, write_fd = os.pipe()
                fds[name] = read_fd
                # bwrap reads the file from this pipe; size it to hold the whole file so
                # the write cannot block before bwrap starts.
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, max(len(data) + 4096, 65536))
                os.write(write_fd, data)
                os.close(write_fd)
            argv = bwrap_argv(self.bwrap, self.python, fds, limits, serve)
            worker = PopenWorker(
                self.name, argv, limits, pass_fds=tuple(fds.values()), env={"PATH": "/usr/bin:/bin"}, cwd="/", **kw
            )
        finally:
            for fd in fds.values():
                os.close(fd)
        worker.host_uid = uid
        return worker
