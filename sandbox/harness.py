#!/usr/bin/env python3
"""selfloop sandbox harness: the program that runs INSIDE a sandbox. Standard library only.

It reads jobs as JSON lines on stdin and writes one JSON result line per job on
stdout. Its stdout is the result channel; no child ever inherits it. A job holds
candidate files, an optional entry program, optional tests / doctests / a
``check(answer)`` checker / an expected answer, limits, and a per-job nonce.

Why the candidate cannot forge a pass:

* Candidate code only ever runs in child processes with their own session and
  rlimits; their stdout/stderr are pipes the harness reads (capped), their stdin
  is the job's stdin text, never the job itself. They are forked from a
  *launcher* (see LAUNCHER_PROGRAM), a pristine interpreter that never holds a
  job's expected answer, checker, tests or nonce, so there is nothing of the
  kind in a candidate's memory to find.
* The nonce arrives on the harness's stdin and lives only in this process's
  memory. This process and the tester make themselves non-dumpable
  (``prctl(PR_SET_DUMPABLE, 0)``), so same-uid code cannot ptrace them or open
  their ``/proc/<pid>/{mem,fd,environ}``. A result line without the nonce is
  rejected by the client; a line the candidate smuggles onto the channel some
  other way cannot carry it.
* Tests, doctests and checkers run in a separate *tester* process that never
  executes candidate code. Candidate modules are reached through RPC: a
  candidate-side server evaluates calls and returns a canonical encoding of
  plain values (None, bool, int, float, str, bytes, list, tuple, set, dict of
  exact built-in types); anything else comes back as an opaque handle whose
  ``==`` is identity. So an object whose ``__eq__`` is always true, or code that
  monkeypatches the checker, cannot make a check pass.
* The harness counts checks itself. Exiting early, crashing the server or
  killing the tester leaves checks failed or missing, never passed.

Roles (``--role``): the default is the harness; ``server`` is the candidate-side
RPC server; ``tester`` runs the checks. Candidate files are compiled in a
limited child before any of them runs. The harness does not
judge quality or decide acceptance: it reports facts, and the client outside the
sandbox decides.
"""

from __future__ import annotations

# Only what every harness start needs: the rest (ast, base64, doctest, io, linecache, shutil,
# socket, types) is imported where it is used, by the roles and jobs that use it, and tempfile
# and subprocess not at all. Imports were most of a sandbox's start: this set costs about 8 ms
# over a bare interpreter here, the former one 22.
import builtins
import ctypes
import json
import marshal
import os
import select
import selectors
import signal
import sys
import time

try:
    # CPython's own sha256: hashlib would load OpenSSL first (~6 ms of every sandbox start).
    from _sha256 import sha256  # 3.11
except ImportError:
    try:
        from _sha2 import sha256  # 3.12+
    except ImportError:
        from hashlib import sha256

PROTOCOL = 1
HERE = os.path.abspath(__file__)
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# Exit code of a child whose files do not compile (the error is on its stderr).
REPORTED = 3
MAX_RPC_LINE = 16 * 1024 * 1024


# --------------------------------------------------------------------------- hardening


LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


def make_undumpable() -> None:
    """Forbid same-uid processes from ptracing us or reading /proc/self/{mem,fd,environ}."""
    if LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


# --------------------------------------------------------------------------- launcher

# Every Python child of a job (the program, which first compiles the job's files; a compile-only
# child for jobs without one; the candidate-side server; the tester) is forked from the
# *launcher*: a pristine interpreter started once per sandbox with the children's flags and
# environment, which never sees a job's expected answer, checker, tests or nonce. A fork of it
# costs about a millisecond where starting an interpreter costs 8-10. The child behaves as
# `python -I -S FILE` would: a fresh __main__, sys.argv, the job's limits, cwd, stdin and pipes,
# every other descriptor closed, default signal handling, and the interpreter's exit rules
# (SystemExit codes, the traceback from the program's frame and exit code 1, atexit, non-daemon
# threads, a final flush). What differs: the launcher's own few modules (array, ctypes, fcntl,
# math, resource and the C parts of socket and signal) are already imported, and sys.orig_argv
# names the launcher. It uses `_socket` and `_signal` rather than `socket` and `signal`: their
# Python wrappers bring enum and selectors, 6-7 ms of a one-shot sandbox's start here, for a few
# constants. It is not forked from the harness itself: harness memory holds the job (its
# expected answer and nonce), which a program could find with `gc.get_objects()`.
#
# Wire: SOCK_SEQPACKET, one marshal message each way per event. In: (argv after the interpreter
# or None, cwd, limits, target descriptor numbers, .py files to compile first, the descriptor
# that reports their compile), with the descriptors attached (stdin, stdout, stderr, then the
# extras). Out: ("pid", pid) or ("fail", why) for each request, ("exit", pid, wait status) when
# a child ends. A candidate can signal the launcher (it is the candidate's parent): the harness
# then sees it die (or stopped), fails that job and starts a new launcher for the next.
LAUNCHER_PROGRAM = r"""
import _signal, _socket, array, builtins, ctypes, fcntl, marshal, math, os, resource, select, sys

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.prctl(1, _signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the harness
LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: same-uid code cannot ptrace or read this process
if os.getppid() != int(sys.argv[2]):
    os._exit(0)
os.chdir("/")
ME = os.getpid()
REPORTED = int(sys.argv[3])
SOCK = _socket.socket(fileno=int(sys.argv[1]))
WAKE_R, WAKE_W = os.pipe()
os.set_blocking(WAKE_W, False)


def receive():
    # socket.recv_fds(SOCK, 1 << 20, 64), on the C socket.
    fds = array.array("i")
    msg, ancdata, _, _ = SOCK.recvmsg(1 << 20, _socket.CMSG_LEN(64 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def send(*msg):
    try:
        SOCK.send(marshal.dumps(msg))
    except OSError:
        os._exit(0)


def place(fds, targets):
    # Received descriptors go above every number in play first, so no dup2 clobbers one not yet placed.
    base = max([*fds, *targets, SOCK.fileno(), WAKE_R, WAKE_W]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, base) for fd in fds]
    for fd, target in zip(high, targets):
        os.dup2(fd, target)
    lo = 0
    for keep in sorted(set(targets)):
        if lo < keep:  # an empty range is not a no-op: closerange(0, 0) closes every descriptor
            os.closerange(lo, keep)
        lo = keep + 1
    os.closerange(lo, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def limit(lim):
    cpu = max(1, math.ceil(lim["timeout_s"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = lim["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    size = lim["file_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim["nofile"], lim["nofile"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if lim.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"]))


def exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def fail(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(REPORTED)


def precompile(files, status):
    # The job's .py files compile before any of them runs, then one byte on `status` says so:
    # candidate code only runs after it, so it can neither forge nor take back that report.
    codes = {}
    for rel in files:
        try:
            with open(rel, encoding="utf-8") as f:
                codes[rel] = compile(f.read(), rel, "exec", dont_inherit=True)
        except SyntaxError as e:
            fail(f"{type(e).__name__}: {e.msg} ({rel}, line {e.lineno})")
        except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as e:
            fail(f"{type(e).__name__}: {e} ({rel})")
    os.write(status, b"C")
    os.close(status)
    return codes


def run(argv, cwd, lim, targets, fds, files, status):
    _signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    os.setsid()
    LIBC.prctl(1, _signal.SIGKILL, 0, 0, 0)  # and the child dies with the launcher
    if os.getppid() != ME:
        os._exit(126)
    LIBC.prctl(4, 1, 0, 0, 0)  # dumpable again, as after an exec
    place(fds, targets)
    limit(lim)
    os.chdir(cwd)
    codes = precompile(files, status) if status is not None else {}
    if argv is None:
        os._exit(0)
    main = type(sys)("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    rc = 0
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            code = compile(argv[1], "<string>", "exec", dont_inherit=True)
        else:
            sys.argv = list(argv)
            main.__file__ = argv[0]
            code = codes.get(argv[0])
            if code is None:
                with open(argv[0], "rb") as f:
                    data = f.read()
                code = marshal.loads(data[16:]) if argv[0].endswith(".pyc") else compile(data, argv[0], "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as e:
        rc = exit_code(e)
    except BaseException:
        kind, value, tb = sys.exc_info()
        try:
            # From the program's own frame on, as `python FILE` shows it.
            sys.excepthook(kind, value.with_traceback(tb.tb_next), tb.tb_next)
        except BaseException:
            pass
        rc = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except SystemExit as e:
        rc = exit_code(e)
    except BaseException:
        rc = rc or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            rc = rc or 120
    os._exit(rc)


def launch(req, fds):
    argv, cwd, lim, targets, files, status = req
    try:
        pid = os.fork()
    except OSError as e:
        pid = None
        send("fail", f"fork failed: {e}")
    if pid == 0:
        try:
            run(argv, cwd, lim, targets, fds, files, status)
        except BaseException as e:
            try:
                os.write(2, f"launcher: {type(e).__name__}: {e}\n".encode())
            finally:
                os._exit(126)
    for fd in fds:
        os.close(fd)
    if pid:
        send("pid", pid)


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send("exit", pid, status)


# The first compile() of a process sets up the parser (~1 ms, 150 page faults): done here once,
# every child inherits it instead of paying it again.
compile("pass", "<warm-up>", "exec", dont_inherit=True)
_signal.set_wakeup_fd(WAKE_W)
_signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
poller = select.poll()
poller.register(SOCK, select.POLLIN)
poller.register(WAKE_R, select.POLLIN)
while True:
    for fd, _ in poller.poll():
        if fd == WAKE_R:
            os.read(WAKE_R, 4096)
            reap()
            continue
        try:
            msg, fds = receive()
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        launch(marshal.loads(msg), fds)
"""
# How long the harness waits for the launcher to answer a request before it replaces it
# (a candidate may have stopped it with SIGSTOP); a fork takes milliseconds.
LAUNCHER_ANSWER_S = 3.0


class Launcher:
    """The harness's handle on the launcher process (started with the harness, replaced when it dies)."""

    def __init__(self) -> None:
        self.proc: int | None = None  # the launcher's pid
        self.sock = None  # our end of its socket (socket.socket)
        self.live: set[int] = set()  # pids of children not yet known to have ended
        self.exits: dict[int, int] = {}  # pid -> wait status, for those that have

    @property
    def pid(self) -> int | None:
        return self.proc if self.proc and self.sock else None

    def start(self) -> None:
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # posix_spawn, not subprocess (whose import alone costs a one-shot sandbox about 3 ms):
            # only `theirs` is inheritable here, and stdin/stdout/stderr become /dev/null.
            theirs.set_inheritable(True)
            self.proc = os.posix_spawn(
                sys.executable,
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    LAUNCHER_PROGRAM,
                    str(theirs.fileno()),
                    str(os.getpid()),
                    str(REPORTED),
                ],
                CHILD_ENV,
                file_actions=[(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)],
                setsid=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock, self.live, self.exits = ours, set(), {}

    def stop(self) -> None:
        """Kill the launcher; its children die with it (parent-death signal)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                os.kill(self.proc, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.proc, 0)
            self.proc = None

    def spawn(
        self,
        argv: list[str] | None,
        cwd: str,
        limits: dict,
        fds: list[int],
        targets: list[int],
        compile_first: list[str],
        status: int | None,
    ) -> int:
        """Fork a child running ``python -I -S *argv`` with `fds` placed at `targets`; return its pid.

        With `status` (one of the targets), the child first compiles `compile_first` and writes one
        byte there when all of them compile; with `argv` None it then exits."""
        lim = {k: limits[k] for k in LIMIT_KEYS if k in limits}
        req = marshal.dumps((argv, cwd, lim, targets, compile_first, status))
        for attempt in (1, 2):
            if self.sock is None:
                self.start()
            try:
                import socket

                socket.send_fds(self.sock, [req], fds)
                answer = self._answer(time.monotonic() + LAUNCHER_ANSWER_S)
            except OSError:
                answer = None
            if answer is not None:
                if answer[0] == "fail":
                    raise OSError(answer[1])
                return answer[1]
            self.stop()  # dead or stopped: a fresh launcher gets the request once more
        raise OSError("the sandbox's process launcher did not answer")

    def _answer(self, deadline: float) -> tuple | None:
        while self.sock is not None:
            for msg in self.pump():
                if msg[0] in ("pid", "fail"):
                    return msg
            if time.monotonic() >= deadline:
                return None
            if self.sock is not None:
                select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
        return None

    def pump(self) -> list[tuple]:
        """Read every message waiting; record exits; return the others. EOF marks the launcher dead."""
        got = []
        while self.sock is not None:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.stop()
                break
            msg = marshal.loads(data)
            if msg[0] == "exit":
                if msg[1] in self.live:
                    self.live.discard(msg[1])
                    self.exits[msg[1]] = msg[2]
            else:
                if msg[0] == "pid":  # now, not when spawn returns: its exit may be in this same read
                    self.live.add(msg[1])
                got.append(msg)
        return got

    def stopped(self) -> bool:
        """Whether a candidate has stopped the launcher (SIGSTOP): it then reaps and answers nothing."""
        try:
            with open(f"/proc/{self.proc}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
        except (OSError, IndexError, AttributeError):
            return False

    def wait_any(self, timeout: float) -> None:
        """Block until the launcher says something (or dies), at most `timeout` seconds."""
        if self.sock is not None and select.select([self.sock], [], [], timeout)[0]:
            self.pump()


LIMIT_KEYS = ("timeout_s", "memory_mb", "file_mb", "nofile", "nproc")


class ForkedProc:
    """A launcher child seen through the parts of `subprocess.Popen` the harness uses."""

    def __init__(self, launcher: Launcher, pid: int, stdin, stdout, stderr) -> None:
        self.launcher, self.pid = launcher, pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self.lost = False  # the launcher died while this child ran: it died with it, status unknown

    def poll(self) -> int | None:
        if self.returncode is None:
            launcher = self.launcher
            launcher.pump()
            if self.pid in launcher.exits:
                self.returncode = os.waitstatus_to_exitcode(launcher.exits.pop(self.pid))
            elif self.pid not in launcher.live or launcher.sock is None:
                self.returncode, self.lost = -signal.SIGKILL, True
        return self.returncode

    def wait(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            self.launcher.wait_any(min(0.05, max(0.0, deadline - time.monotonic())))
            if self.returncode is None and self.launcher.stopped():
                self.launcher.stop()  # its children die with it; the next job gets a new one
        if self.returncode is None:  # not reaped in time (a stuck kernel task): report it killed
            self.returncode, self.lost = -signal.SIGKILL, True
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# --------------------------------------------------------------------------- children


class Child:
    """One limited child process (forked by the launcher) with captured, capped stdout/stderr."""

    def __init__(
        self,
        name: str,
        launcher: Launcher,
        argv: list[str] | None,
        limits: dict,
        cwd: str,
        stdin: bytes = b"",
        extra_fds: tuple[int, ...] = (),
        compile_first: list[str] | None = None,
    ):
        self.name = name
        self.cap = limits["output_bytes"]
        self.out = bytearray()
        self.err = bytearray()
        self.overflow = False
        pipes = [os.pipe() for _ in range(3 + bool(compile_first))]  # stdin, stdout, stderr[, compile status]
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        self.status_fd: int | None = None
        status = None
        if compile_first:
            self.status_fd, status = pipes[3]
            os.set_blocking(self.status_fd, False)  # read once the child is done or out of time
            extra_fds = (*extra_fds, status)
        try:
            pid = launcher.spawn(
                argv, cwd, limits, [*theirs, *extra_fds], [0, 1, 2, *extra_fds], compile_first or [], status
            )
        except OSError:
            for fd in ours:
                os.close(fd)
            if self.status_fd is not None:
                os.close(self.status_fd)
            raise
        finally:
            for fd in theirs if status is None else (*theirs, status):
                os.close(fd)
        self.proc = ForkedProc(
            launcher, pid, os.fdopen(ours[0], "wb", 0), os.fdopen(ours[1], "rb", 0), os.fdopen(ours[2], "rb", 0)
        )
        # Fed by `supervise` as the pipe drains, so any size works without a writer thread.
        self.pending = memoryview(stdin)
        if not stdin:
            self.proc.stdin.close()

    def streams(self) -> list:
        return [s for s in (self.proc.stdout, self.proc.stderr) if s is not None and not s.closed]

    def feed(self, stream, data: bytes) -> None:
        buf = self.out if stream is self.proc.stdout else self.err
        room = self.cap - len(buf)
        buf += data[: max(room, 0)]
        if len(data) > room:
            self.overflow = True

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def compiled(self) -> bool:
        """Whether the child reported that every file given to `compile_first` compiled."""
        if self.status_fd is None:
            return False
        try:
            return os.read(self.status_fd, 1) == b"C"
        except OSError:  # BlockingIOError included: nothing was written
            return False

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        if self.status_fd is not None:
            os.close(self.status_fd)
            self.status_fd = None
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if s is not None and not s.closed:
                s.close()

    def text(self, which: str) -> str:
        return (self.out if which == "out" else self.err).decode("utf-8", "replace")


def supervise(children: list[Child], until: list[Child], deadline: float, extra: dict | None = None) -> str | None:
    """Feed stdin and pump output of all children until every child in `until` has exited.

    Returns None when they exited, "timeout" at the deadline, "output_limit" when
    a child wrote more than its cap. ``extra`` maps additional readable fds to
    bytearrays (the tester's result pipe). Once the awaited children have exited,
    what is already buffered is drained a bounded number of times and reading
    stops: a detached grandchild may hold the pipes open (and keep writing) forever.
    """
    sel = selectors.DefaultSelector()
    for c in children:
        for s in c.streams():
            os.set_blocking(s.fileno(), False)
            sel.register(s, selectors.EVENT_READ, c)
        if c.pending and not c.proc.stdin.closed:
            os.set_blocking(c.proc.stdin.fileno(), False)
            sel.register(c.proc.stdin, selectors.EVENT_WRITE, c)
    for fd, buf in (extra or {}).items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, buf)
    # The launcher reports exits on its socket: without it here an exit would wait out a select timeout.
    for launcher in {c.proc.launcher for c in children}:
        if launcher.sock is not None:
            sel.register(launcher.sock, selectors.EVENT_READ, launcher)
    drain_rounds = 64
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            done = all(c.proc.poll() is not None for c in until)
            events = sel.select(timeout=0 if done else min(0.05, deadline - now)) if sel.get_map() else []
            if done:
                drain_rounds -= 1
                if not events or drain_rounds <= 0:
                    return None
            for key, mask in events:
                if isinstance(key.data, Launcher):
                    key.data.pump()
                    if key.data.sock is None:
                        sel.unregister(key.fileobj)
                    continue
                if mask & selectors.EVENT_WRITE:
                    child = key.data
                    try:
                        sent = os.write(key.fd, child.pending[:65536])
                        child.pending = child.pending[sent:]
                    except BlockingIOError:
                        continue
                    except OSError:
                        child.pending = memoryview(b"")
                    if not child.pending:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                if isinstance(key.data, Child):
                    key.data.feed(key.fileobj, data)
                    if key.data.overflow:
                        return "output_limit"
                else:
                    buf = key.data
                    buf += data  # in place: the bytearray belongs to the caller
                    if len(buf) > MAX_RPC_LINE:
                        return "output_limit"
            if not events and not sel.get_map():
                time.sleep(0.01)
    finally:
        sel.close()


# --------------------------------------------------------------------------- harness


def classify_crash(child: Child) -> tuple[str, str]:
    """Status and reason for a child that did not exit 0."""
    rc = child.proc.returncode
    tail = last_line(child.text("err"))
    if child.proc.lost:
        return (
            "error",
            f"the sandbox's process launcher died while the {child.name} ran (a candidate can signal it: it is their parent)",
        )
    if "MemoryError" in child.text("err") or "Cannot allocate memory" in child.text("err"):
        return "memory", f"{child.name} ran out of memory: {tail}"
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            return "timeout", f"{child.name} exceeded its CPU time limit"
        if sig == signal.SIGKILL:
            return "memory", f"{child.name} was killed (SIGKILL, most likely the memory limit)"
        return "error", f"{child.name} was killed by signal {signal.Signals(sig).name}"
    return "error", f"{child.name} exited with code {rc}: {tail}" if tail else f"{child.name} exited with code {rc}"


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def safe_relpath(name: str) -> str:
    norm = os.path.normpath(name)
    if not name or os.path.isabs(name) or norm.startswith("..") or "\0" in name:
        raise ValueError(f"bad file name {name!r}: must be a relative path inside the scratch dir")
    return norm


def sweep_namespace(keep: int | None) -> bool:
    """Kill every process of this pid namespace except init, us and `keep` (the launcher); True if something survived.

    Only ever called with ``--pidns``, i.e. when the harness is the sole tenant of
    its own pid namespace (docker, bwrap); never on the process backend.
    """
    spare = {1, os.getpid(), keep}

    def others() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in spare:
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in (b"Z", b"X"):
                    found.append(int(entry))
        return found

    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        pids = others()
        if not pids:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return bool(others())


class CannotStart(Exception):
    pass


def private_dir(parent: str, prefix: str) -> str:
    """A new directory of ours under `parent` (tempfile.mkdtemp, without importing tempfile and random)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_tree(path: str) -> None:
    try:
        os.rmdir(path)  # the usual case for a tester's directory: empty
    except OSError:
        import shutil  # it imports the compression modules: only a directory with files pays for it

        shutil.rmtree(path, ignore_errors=True)


def run_job(job: dict, scratch: str, pidns: bool, launcher: Launcher) -> dict:
    """Run one job in the empty directory `scratch`; always returns a result dict (never raises for candidate behaviour)."""
    start = time.monotonic()
    limits = dict(job["limits"])
    limits["output_bytes"] = limits["output_kb"] * 1024
    deadline = start + limits["timeout_s"]
    checks: list[dict] = []
    children: list[Child] = []
    result = {"status": "error", "reason": "", "exit_code": None}

    def spawn(name: str, argv: list[str], **kw) -> Child:
        try:
            child = Child(name, launcher, argv, limits, cwd=kw.pop("cwd", scratch), **kw)
        except OSError as e:
            raise CannotStart(f"the sandbox could not start the {name}: {e}") from None
        children.append(child)
        return child

    def finish(status: str, reason: str) -> dict:
        result.update(status=status, reason=reason)
        return result

    try:
        files = {safe_relpath(k): v for k, v in job.get("files", {}).items()}
        for rel, text in files.items():
            path = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        sources = sorted(rel for rel in files if rel.endswith(".py"))
        entry = safe_relpath(job["entry"]) if job.get("entry") else None

        # Every .py file compiles before any candidate code runs. With an entry program that
        # happens in the program's own process (it reports the compile on a pipe first, then
        # runs): one child per verdict instead of two.
        if entry or sources:
            stdin = (job.get("stdin") or "").encode("utf-8", "replace") if entry else b""
            first = spawn(
                "program" if entry else "compile", [entry] if entry else None, stdin=stdin, compile_first=sources
            )
            stop = supervise([first], [first], deadline)
            if sources and not first.compiled():
                first.name = "compile"
                if stop:
                    return finish(
                        stop,
                        "compiling took longer than the time limit"
                        if stop == "timeout"
                        else "the compiler wrote more output than allowed",
                    )
                status, reason = classify_crash(first)
                if status == "error" and first.proc.returncode == REPORTED:
                    reason = f"does not compile: {last_line(first.text('err'))}"
                return finish(status, reason)
            if sources:
                checks.append({"name": "compile", "ok": True, "message": ""})

        answer = job.get("answer")
        if entry:
            prog = first
            result["exit_code"] = prog.proc.returncode
            if stop:
                return finish(
                    stop,
                    f"the program did not finish within {limits['timeout_s']:g} s"
                    if stop == "timeout"
                    else f"the program wrote more than {limits['output_kb']} KiB",
                )
            if prog.proc.returncode != 0:
                return finish(*classify_crash(prog))
            checks.append({"name": "program exits 0", "ok": True, "message": ""})
            if answer is None:
                answer = prog.text("out")

        expected = job.get("expected")
        if expected is not None:
            got = (answer or "").strip()
            ok = got == expected.strip()
            checks.append(
                {
                    "name": "expected answer",
                    "ok": ok,
                    "message": "" if ok else f"expected {expected.strip()[:200]!r}, got {got[:200]!r}",
                }
            )

        tests, checker, doctests = job.get("tests"), job.get("checker"), bool(job.get("doctests"))
        if tests or checker or doctests:
            status = run_tester(job, limits, sources, answer, spawn, scratch, deadline, checks)
            if status:
                return finish(*status)

        if not checks:
            return finish("error", "the job defines nothing to check")
        failed = [c for c in checks if not c["ok"]]
        if failed:
            return finish(
                "fail",
                f"{len(failed)} of {len(checks)} checks failed; first: {failed[0]['name']}: {failed[0]['message'][:300]}",
            )
        return finish("pass", f"{len(checks)} checks passed")
    except (ValueError, CannotStart) as e:
        return finish("error", str(e))
    finally:
        for c in children:
            c.close()
        result["leak"] = sweep_namespace(launcher.pid) if pidns else False
        result["checks_run"] = len(checks)
        result["checks_passed"] = sum(1 for c in checks if c["ok"])
        result["failures"] = [f"{c['name']}: {c['message']}" for c in checks if not c["ok"]]
        result["checks"] = [c["name"] for c in checks]
        cand = [c for c in children if c.name in ("program", "candidate module", "compile")]
        result["stdout"] = "".join(c.text("out") for c in cand)
        result["stderr"] = "".join(c.text("err") for c in cand)
        result["wall_ms"] = round((time.monotonic() - start) * 1000, 1)


def run_tester(job, limits, sources, answer, spawn, scratch, deadline, checks) -> tuple[str, str] | None:
    """Run the tester (and the candidate-side server when modules are needed); extend `checks`."""
    modules = {os.path.splitext(rel)[0].replace(os.sep, "."): rel for rel in sources}
    need_server = bool(job.get("tests") or job.get("doctests")) and bool(modules)
    to_tester_r, to_tester_w = os.pipe()  # server -> tester
    to_server_r, to_server_w = os.pipe()  # tester -> server
    result_r, result_w = os.pipe()  # tester -> harness
    server = None
    try:
        if need_server:
            server = spawn(
                "candidate module",
                [HERE, "--role", "server", "--rpc-in", str(to_server_r), "--rpc-out", str(to_tester_w)],
                extra_fds=(to_server_r, to_tester_w),
            )
        spec = {
            "tests": job.get("tests"),
            "checker": job.get("checker"),
            "answer": answer,
            "doctests": {name: _read(scratch, rel) for name, rel in modules.items()} if job.get("doctests") else {},
            "modules": sorted(modules) if need_server else [],
            "star": job.get("module") if need_server else None,
        }
        tester_cwd = private_dir(os.path.dirname(scratch), "tester-")
        tester = spawn(
            "tester",
            [
                HERE,
                "--role",
                "tester",
                "--rpc-in",
                str(to_tester_r),
                "--rpc-out",
                str(to_server_w),
                "--result-fd",
                str(result_w),
            ],
            stdin=json.dumps(spec).encode(),
            cwd=tester_cwd,
            extra_fds=(to_tester_r, to_server_w, result_w),
        )
    finally:
        for fd in (to_tester_r, to_tester_w, to_server_r, to_server_w, result_w):
            os.close(fd)
    report = bytearray()
    try:
        stop = supervise([c for c in (server, tester) if c], [tester], deadline, extra={result_r: report})
    finally:
        os.close(result_r)
        remove_tree(tester_cwd)
    if stop:
        return stop, (
            f"the checks did not finish within {limits['timeout_s']:g} s"
            if stop == "timeout"
            else f"output exceeded {limits['output_kb']} KiB"
        )
    try:
        found = json.loads(report.decode("utf-8"))["checks"]
    except (ValueError, KeyError, TypeError):
        return (
            "error",
            f"the tester reported nothing (exit code {tester.proc.returncode}): {last_line(tester.text('err'))}",
        )
    checks.extend({"name": str(c["name"]), "ok": c["ok"] is True, "message": str(c.get("message", ""))} for c in found)
    kinds = {c.get("kind") for c in found if c["ok"] is not True}
    if "memory" in kinds:
        return "memory", "the candidate ran out of memory during the checks"
    if "died" in kinds:
        why = (
            classify_crash(server)[1]
            if server and server.proc.poll() is not None
            else "the candidate process stopped answering"
        )
        return "error", f"the candidate process died during the checks: {why}"
    return None


def _read(scratch: str, rel: str) -> str:
    with open(os.path.join(scratch, rel), encoding="utf-8") as f:
        return f.read()


def harness_main(args: Args) -> int:
    make_undumpable()
    with open(HERE, "rb") as f:
        digest = sha256(f.read()).hexdigest()
    launcher = Launcher()
    # Started first, so its interpreter starts while this one says hello and reads the job: a
    # one-shot program then waits 3-8 ms less (interleaved pairs), and a job that needs no child
    # pays only the posix_spawn here.
    launcher.start()
    out = sys.stdout
    out.write(
        json.dumps(
            {"hello": "selfloop-harness", "protocol": PROTOCOL, "sha256": digest, "python": sys.version.split()[0]}
        )
        + "\n"
    )
    out.flush()
    os.makedirs(args.scratch, exist_ok=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            nonce = job["nonce"]
            job["limits"]["nofile"]  # fail early on a malformed job
        except (ValueError, KeyError, TypeError) as e:
            out.write(json.dumps({"nonce": None, "status": "sandbox_error", "reason": f"malformed job: {e}"}) + "\n")
            out.flush()
            continue
        scratch = private_dir(args.scratch, "job-")
        try:
            result = run_job(job, scratch, args.pidns, launcher)
            result["nonce"] = nonce
            out.write(json.dumps(result) + "\n")
            out.flush()
        finally:
            remove_tree(scratch)  # once the verdict is out: nobody waits for it
        if not args.serve:
            break
    launcher.stop()
    return 0


# --------------------------------------------------------------------------- RPC encoding

# Exact built-in types only: a subclass could override __eq__/__hash__/__repr__.
_SCALARS = (type(None), bool, str)


def encode(value, handles: "dict[int, object] | None") -> object:
    """Canonical JSON form of a plain value; other objects become handles (server side)."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is int:
        return {"int": str(value)}
    if t is float:
        return {"float": repr(value)}
    if t is bytes:
        import base64

        return {"bytes": base64.b64encode(value).decode()}
    if t in (list, tuple, set, frozenset):
        return {t.__name__: [encode(v, handles) for v in value]}
    if t is dict:
        return {"dict": [[encode(k, handles), encode(v, handles)] for k, v in value.items()]}
    if handles is None:
        raise TypeError(f"cannot pass a {t.__name__} to candidate code (only plain values and candidate objects)")
    hid = id(value)
    handles[hid] = value
    return {"handle": hid, "type": t.__name__[:100], "callable": callable(value)}


_SEQUENCES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(obj, make_handle) -> object:
    """Rebuild plain values from their canonical form; only known tags are accepted."""
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is dict and set(obj) == {"handle", "type", "callable"} and type(obj["handle"]) is int:
        return make_handle(obj["handle"], str(obj["type"]), obj["callable"] is True)
    if type(obj) is dict and len(obj) == 1:
        ((tag, val),) = obj.items()
        if tag == "int" and type(val) is str:
            return int(val)
        if tag == "float" and type(val) is str:
            return float(val)
        if tag == "bytes" and type(val) is str:
            import base64

            return base64.b64decode(val)
        if tag in _SEQUENCES and type(val) is list:
            return _SEQUENCES[tag](decode(v, make_handle) for v in val)
        if tag == "dict" and type(val) is list and all(type(kv) is list and len(kv) == 2 for kv in val):
            return {decode(k, make_handle): decode(v, make_handle) for k, v in val}
    raise ProtocolError(f"unexpected value in reply: {str(obj)[:80]}")


class ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------- server role (candidate side)


def server_main(rpc_in: int, rpc_out: int) -> int:
    """Import candidate modules on request and evaluate operations on their objects.

    This process runs candidate code, so nothing it says is trusted: it can only
    answer with values, which the tester decodes into plain built-in objects.
    """
    sys.path.insert(0, os.getcwd())
    sys.setrecursionlimit(10_000)
    reader = os.fdopen(rpc_in, "rb")
    writer = os.fdopen(rpc_out, "wb")
    handles: dict[int, object] = {}

    def obj(h):
        return handles[h] if type(h) is int else None

    def arg(v):
        return decode(v, lambda h, t, c: handles[h])

    ops = {
        "import": lambda r: __import__(r["module"], fromlist=["_"]),
        "dir": lambda r: {n: getattr(obj(r["h"]), n) for n in dir(obj(r["h"])) if not n.startswith("_")},
        "getattr": lambda r: getattr(obj(r["h"]), r["name"]),
        "call": lambda r: obj(r["h"])(*[arg(a) for a in r["args"]], **{k: arg(v) for k, v in r["kwargs"].items()}),
        "getitem": lambda r: obj(r["h"])[arg(r["key"])],
        "len": lambda r: len(obj(r["h"])),
        "iter": lambda r: list(obj(r["h"])),
        "contains": lambda r: arg(r["item"]) in obj(r["h"]),
        "bool": lambda r: bool(obj(r["h"])),
        "repr": lambda r: repr(obj(r["h"])),
        "str": lambda r: str(obj(r["h"])),
    }
    for line in reader:
        try:
            req = json.loads(line)
            value = ops[req["op"]](req)
            reply = {"ok": encode(value, handles)}
        except BaseException as e:  # the candidate's exceptions are answers, not crashes
            if isinstance(e, KeyboardInterrupt):
                raise
            reply = {"raise": {"type": type(e).__name__[:100], "message": str(e)[:2000]}}
        try:
            data = json.dumps(reply)
        except (ValueError, RecursionError, TypeError) as e:
            data = json.dumps({"raise": {"type": "TypeError", "message": f"unencodable reply: {e}"[:2000]}})
        writer.write(data.encode() + b"\n")
        writer.flush()
    return 0


# --------------------------------------------------------------------------- tester role (trusted side)


class CandidateDied(Exception):
    pass


class RemoteError(Exception):
    """A candidate exception whose type is not a built-in exception."""


class Remote:
    """A candidate object seen from the tester. Equality is identity of the handle."""

    __slots__ = ("_rpc", "_h", "_type", "_callable")

    def __init__(self, rpc: "Rpc", h: int, type_name: str, is_callable: bool):
        object.__setattr__(self, "_rpc", rpc)
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_callable", is_callable)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._rpc.ask(op="getattr", h=self._h, name=name)

    def __call__(self, *args, **kwargs):
        return self._rpc.ask(
            op="call",
            h=self._h,
            args=[self._rpc.enc(a) for a in args],
            kwargs={k: self._rpc.enc(v) for k, v in kwargs.items()},
        )

    def __getitem__(self, key):
        return self._rpc.ask(op="getitem", h=self._h, key=self._rpc.enc(key))

    def __len__(self):
        n = self._rpc.ask(op="len", h=self._h)
        if type(n) is not int:
            raise TypeError("len() of a candidate object did not return an int")
        return n

    def __iter__(self):
        items = self._rpc.ask(op="iter", h=self._h)
        return iter(items if type(items) is list else [])

    def __contains__(self, item):
        return self._rpc.ask(op="contains", h=self._h, item=self._rpc.enc(item)) is True

    def __bool__(self):
        return self._rpc.ask(op="bool", h=self._h) is True

    def __repr__(self):
        text = self._rpc.ask(op="repr", h=self._h)
        return text if type(text) is str else f"<{self._type}>"

    def __str__(self):
        text = self._rpc.ask(op="str", h=self._h)
        return text if type(text) is str else f"<{self._type}>"

    def __eq__(self, other):
        return type(other) is Remote and other._h == self._h

    def __hash__(self):
        return hash(("remote", self._h))


class Rpc:
    def __init__(self, rpc_in: int, rpc_out: int):
        self.reader = os.fdopen(rpc_in, "rb")
        self.writer = os.fdopen(rpc_out, "wb")

    def enc(self, value):
        if type(value) is Remote:
            return {"handle": value._h, "type": value._type, "callable": value._callable}
        return encode(value, None)

    def ask(self, **req):
        try:
            self.writer.write(json.dumps(req).encode() + b"\n")
            self.writer.flush()
            line = self.reader.readline(MAX_RPC_LINE)
        except (BrokenPipeError, OSError):
            line = b""
        if not line.endswith(b"\n"):
            raise CandidateDied("the candidate process exited or stopped answering")
        try:
            reply = json.loads(line)
        except ValueError:
            raise ProtocolError("the candidate process sent a malformed reply") from None
        if type(reply) is not dict:
            raise ProtocolError("the candidate process sent a malformed reply")
        if "ok" in reply:
            return decode(reply["ok"], lambda h, t, c: Remote(self, h, t, c))
        err = reply.get("raise")
        if type(err) is not dict:
            raise ProtocolError("the candidate process sent a malformed reply")
        name, message = str(err.get("type")), str(err.get("message"))
        exc = getattr(builtins, name, None)
        if isinstance(exc, type) and issubclass(exc, Exception) and exc is not StopIteration:
            raise exc(message)
        raise RemoteError(f"{name}: {message}")


class RemoteModule(type(sys)):  # types.ModuleType
    def __init__(self, rpc: Rpc, name: str):
        super().__init__(name)
        self.__remote = rpc.ask(op="import", module=name)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.__remote, attr)


class RemoteFinder:
    """Makes `import solution` in tests yield a proxy of the candidate's module."""

    def __init__(self, rpc: Rpc, names: list[str]):
        self.rpc, self.names, self.cache = rpc, set(names), {}

    def find_module(self, name, path=None):  # pragma: no cover - legacy protocol
        return None

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return RemoteModule(self.rpc, spec.name)

    def exec_module(self, module):
        pass


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, CandidateDied):
        return "died"
    return "failed"


def remember_source(filename: str, source: str) -> None:
    """Let tracebacks of exec'd test code show the failing line."""
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def describe(exc: BaseException, filename: str) -> str:
    import traceback  # only a failing check pays for it

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    where = f" (line {frames[-1].lineno}: {frames[-1].line.strip()})" if frames else ""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (text + where)[:1000]


def tester_main(rpc_in: int, rpc_out: int, result_fd: int) -> int:
    make_undumpable()
    spec = json.loads(sys.stdin.buffer.read())
    result = os.fdopen(result_fd, "w")
    os.close(0)
    rpc = Rpc(rpc_in, rpc_out)
    checks: list[dict] = []

    def record(name: str, ok: bool, message: str = "", kind: str = "failed") -> None:
        checks.append({"name": name, "ok": ok, "message": message, "kind": "ok" if ok else kind})

    if spec["modules"]:
        sys.meta_path.insert(0, RemoteFinder(rpc, spec["modules"]))

    if spec.get("checker") is not None:
        run_checker(spec["checker"], spec.get("answer"), record)
    if spec.get("tests"):
        run_tests(rpc, spec["tests"], spec.get("star"), record)
    for name, source in spec.get("doctests", {}).items():
        run_doctests(rpc, name, source, record)
    result.write(json.dumps({"checks": checks}))
    result.close()
    return 0


def run_checker(source: str, answer, record) -> None:
    ns: dict = {"__name__": "checker"}
    remember_source("checker.py", source)
    try:
        exec(compile(source, "checker.py", "exec", dont_inherit=True), ns)
        check = ns.get("check")
        if not callable(check):
            record("checker", False, "the checker defines no check(answer) function")
            return
        verdict = check(answer if isinstance(answer, str) else "")
    except Exception as e:
        record("checker", False, describe(e, "checker.py"), failure_kind(e))
        return
    # `is True`: a truthy non-bool is a checker bug, not a pass.
    record("checker", verdict is True, "" if verdict is True else f"check(answer) returned {verdict!r}")


def run_tests(rpc: Rpc, source: str, star: str | None, record) -> None:
    import ast
    import types

    filename = "tests.py"
    ns: dict = {"__name__": "tests", "__file__": filename}
    remember_source(filename, source)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError) as e:
        record("tests", False, f"the tests do not compile: {e}", "failed")
        return
    if star:
        # The tests may call the candidate's functions by bare name.
        try:
            names = rpc.ask(op="dir", h=rpc.ask(op="import", module=star)._h)
        except Exception as e:
            record(f"import {star}", False, describe(e, ""), failure_kind(e))
            return
        if type(names) is dict:
            ns.update({k: v for k, v in names.items() if type(k) is str})
    top_asserts = any(isinstance(node, ast.Assert) for node in tree.body)
    try:
        exec(code, ns)
    except Exception as e:
        record("tests (module level)", False, describe(e, filename), failure_kind(e))
        return
    if top_asserts:
        record("tests (module level asserts)", True)
    funcs = sorted(
        (
            f
            for n, f in ns.items()
            if n.startswith("test") and isinstance(f, types.FunctionType) and f.__code__.co_filename == filename
        ),
        key=lambda f: f.__code__.co_firstlineno,
    )
    for func in funcs:
        try:
            func()
        except Exception as e:
            record(func.__name__, False, describe(e, filename), failure_kind(e))
        else:
            record(func.__name__, True)
    if not funcs and not top_asserts:
        record("tests", False, "the tests define no test_* function and no assert")


def run_doctests(rpc: Rpc, module: str, source: str, record) -> None:
    """Doctests of a candidate module, executed here against the module's RPC proxy."""
    import ast
    import io

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return  # compile already reported it
    import doctest  # here, not at the top: only doctest jobs pay for importing it

    parser = doctest.DocTestParser()
    found = []
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and ">>>" in doc:
                name = module if isinstance(node, ast.Module) else f"{module}.{node.name}"
                found.append((name, doc, getattr(node, "lineno", 0)))
    if not found:
        return
    try:
        remote = rpc.ask(op="import", module=module)
        names = rpc.ask(op="dir", h=remote._h)
    except Exception as e:
        record(f"doctest {module}", False, describe(e, ""), failure_kind(e))
        return
    seen = set()
    for name, doc, lineno in found:
        if (name, lineno) in seen:
            continue
        seen.add((name, lineno))
        globs = dict(names) if type(names) is dict else {}
        globs["__name__"] = module
        out = io.StringIO()
        runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        try:
            test = parser.get_doctest(doc, globs, name, f"{module}.py", lineno)
            res = runner.run(test, out=out.write, clear_globs=True)
        except Exception as e:
            record(f"doctest {name}", False, describe(e, ""), failure_kind(e))
            continue
        text = "\n".join(ln for ln in out.getvalue().splitlines() if not ln.startswith("*****"))
        kind = "memory" if "MemoryError" in text else "died" if "CandidateDied" in text else "failed"
        record(f"doctest {name}", res.failed == 0, text[-1000:], kind)


# --------------------------------------------------------------------------- entry


class Args:
    """The command line. Parsed by hand: argparse (and the textwrap and regexes it pulls in) was
    about a quarter of a sandbox's start-up, and only selfloop itself starts the harness.

    --role harness|server|tester   (default harness)
    --serve                        handle jobs until stdin closes (warm worker)
    --pidns                        the harness owns its pid namespace: sweep it after each job
    --scratch DIR                  tmpfs for per-job scratch dirs (default /scratch)
    --rpc-in FD --rpc-out FD --result-fd FD   the server's and tester's channels
    """

    FLAGS = {"--serve": "serve", "--pidns": "pidns"}
    VALUES = {
        "--role": ("role", str),
        "--scratch": ("scratch", str),
        "--rpc-in": ("rpc_in", int),
        "--rpc-out": ("rpc_out", int),
        "--result-fd": ("result_fd", int),
    }

    def __init__(self, argv: list[str]) -> None:
        self.role, self.scratch = "harness", "/scratch"
        self.serve = self.pidns = False
        self.rpc_in = self.rpc_out = self.result_fd = None
        it = iter(argv)
        for arg in it:
            if arg in self.FLAGS:
                setattr(self, self.FLAGS[arg], True)
            elif arg in self.VALUES:
                name, kind = self.VALUES[arg]
                value = next(it, None)
                if value is None:
                    raise SystemExit(f"harness: {arg} needs a value")
                try:
                    setattr(self, name, kind(value))
                except ValueError:
                    raise SystemExit(f"harness: {arg} {value!r} is not a valid {kind.__name__}") from None
            else:
                raise SystemExit(f"harness: unknown argument {arg!r}\n{self.__doc__}")
        if self.role not in ("harness", "server", "tester"):
            raise SystemExit(f"harness: --role must be harness, server or tester, not {self.role!r}")


def main(argv: list[str] | None = None) -> int:
    args = Args(sys.argv[1:] if argv is None else argv)
    if args.role == "server":
        return server_main(args.rpc_in, args.rpc_out)
    if args.role == "tester":
        return tester_main(args.rpc_in, args.rpc_out, args.result_fd)
    if args.pidns and not (os.getppid() == 1 and os.getpid() < 1000):
        # A guard against ever sweeping a shared pid namespace: only an init's direct child may.
        print("harness: --pidns given but this process is not the tenant of its own pid namespace", file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
