"""What every role of the harness shares: the protocol number, exit codes, the children's environment,
where the package's own files are, its digest, and the one hardening call."""

from __future__ import annotations

import ctypes
import os
import sys

try:
    # CPython's own sha256: hashlib would load OpenSSL first (~6 ms of every sandbox start).
    from _sha256 import sha256  # 3.11
except ImportError:
    try:
        from _sha2 import sha256  # 3.12+
    except ImportError:
        from hashlib import sha256

PROTOCOL = 1
# The package directory: /sandbox/harness in docker and bwrap, the source tree for the process backend.
HERE = os.path.dirname(os.path.abspath(__file__))
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# Exit code of a child whose files do not compile (the error is on its stderr).
REPORTED = 3
# The longest RPC line and tester report read.
MAX_RPC_LINE = 16 * 1024 * 1024
PR_SET_DUMPABLE = 4
LIBC = ctypes.CDLL(None, use_errno=True)


def program(name: str) -> str:
    """The path of one of the package's programs (``__main__``, ``launcher``): its .pyc where the
    package was shipped compiled (bwrap), else its source."""
    pyc = os.path.join(HERE, name + ".pyc")
    return pyc if os.path.exists(pyc) else os.path.join(HERE, name + ".py")


def package_digest(files: dict[str, bytes]) -> str:
    """sha256 over the package's files (name -> bytes): each as its name, a NUL, its length and its bytes,
    in name order. selfloop.sandbox.runtime.package_digest is the same rule, for the files it ships."""
    h = sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def own_digest() -> str:
    """The digest of the files this harness runs from (.py or .pyc; never __pycache__), sent at hello."""
    files = {}
    for name in os.listdir(HERE):
        if name.endswith((".py", ".pyc")):
            with open(os.path.join(HERE, name), "rb") as f:
                files[name] = f.read()
    return package_digest(files)


def forget_harness() -> None:
    """Take the harness's directory off sys.path and its modules out of sys.modules (server, tester): a
    role forked from the launcher then imports as the single-file harness did, where a candidate module
    named ``harness`` or ``cli`` is the candidate's. The role's own functions keep what they hold."""
    parent = os.path.dirname(HERE)
    sys.path[:] = [p for p in sys.path if p != parent]
    for name in [m for m in sys.modules if m.partition(".")[0] == __package__]:
        del sys.modules[name]


def make_undumpable() -> None:
    """Forbid same-uid processes from ptracing us or reading /proc/self/{mem,fd,environ}."""
    if LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
