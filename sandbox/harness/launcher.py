"""The launcher: a pristine interpreter that forks every Python child of a job. Standard library only.

Every Python child of a job (the program, which first compiles the job's files; a compile-only
child for jobs without one; the candidate-side server; the tester) is forked from the
*launcher*: a pristine interpreter started once per sandbox with the children's flags and
environment, which never sees a job's expected answer, checker, tests or nonce. A fork of it
costs about a millisecond where starting an interpreter costs 8-10. The child behaves as
`python -I -S FILE` would: a fresh __main__, sys.argv, the job's limits, cwd, stdin and pipes,
every other descriptor closed, default signal handling, and the interpreter's exit rules
(SystemExit codes, the traceback from the program's frame and exit code 1, atexit, non-daemon
threads, a final flush). What differs: the launcher's own few modules (array, ctypes, fcntl,
math, resource and the C parts of socket and signal) are already imported, and sys.orig_argv
names the launcher. It uses `_socket` and `_signal` rather than `socket` and `signal`: their
Python wrappers bring enum and selectors, 6-7 ms of a one-shot sandbox's start here, for a few
constants. It is not forked from the harness itself: harness memory holds the job (its
expected answer and nonce), which a program could find with `gc.get_objects()`.

Wire: SOCK_SEQPACKET, one marshal message each way per event. In: (argv after the interpreter
or None, cwd, limits, target descriptor numbers, .py files to compile first, the descriptor
that reports their compile), with the descriptors attached (stdin, stdout, stderr, then the
extras). Out: ("pid", pid) or ("fail", why) for each request, ("exit", pid, wait status) when
a child ends. A candidate can signal the launcher (it is the candidate's parent): the harness
then sees it die (or stopped), fails that job and starts a new launcher for the next.
"""

import _signal
import _socket
import array
import builtins
import ctypes
import fcntl
import marshal
import math
import os
import resource
import select
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.prctl(1, _signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the harness
LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: same-uid code cannot ptrace or read this process
if os.getppid() != int(sys.argv[2]):
    os._exit(0)
os.chdir("/")
# Started as a script, not with -c: where -I does not imply -P (before 3.11) put back the '' -c gave.
if not getattr(sys.flags, "safe_path", False):
    sys.path[0] = ""
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
                code = (
                    marshal.loads(data[16:])
                    if argv[0].endswith(".pyc")
                    else compile(data, argv[0], "exec", dont_inherit=True)
                )
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
