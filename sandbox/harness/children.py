"""The harness's side of its children: the launcher's handle (`Launcher`), each child seen as a process
(`ForkedProc`, `Child`, capped output), and `supervise`, which pumps their pipes to a deadline."""

from __future__ import annotations

import marshal
import os
import select
import selectors
import signal
import sys
import time

from .common import CHILD_ENV, MAX_RPC_LINE, REPORTED, program

# The limits the launcher applies to a child (launcher.py's `limit`).
LIMIT_KEYS = ("timeout_s", "memory_mb", "file_mb", "nofile", "nproc")
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
                    program("launcher"),
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
