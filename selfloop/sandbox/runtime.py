"""Where the in-sandbox pieces come from on this machine: the harness file and the
Python interpreter that runs it (bwrap, process, and the offline image build).

Only lookups; nothing is started here.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import selfloop
from selfloop.errors import SelfloopError


def harness_path() -> Path:
    """The harness in a source checkout (``sandbox/harness.py``) or inside the installed wheel."""
    pkg = Path(selfloop.__file__).resolve().parent
    for candidate in (pkg.parent / "sandbox" / "harness.py", pkg / "_starter" / "sandbox" / "harness.py"):
        if candidate.is_file():
            return candidate
    raise SelfloopError("the sandbox harness (sandbox/harness.py) is missing from this installation")


def harness_bytes() -> bytes:
    return harness_path().read_bytes()


def harness_sha256() -> str:
    return hashlib.sha256(harness_bytes()).hexdigest()


@functools.cache
def compiled_harness(python: str) -> bytes | None:
    """The harness compiled to a .pyc by the interpreter that will run it, or None if it cannot be.

    A sandbox that starts from the .pyc skips compiling the harness at every start
    (7 ms of a ~50 ms one-shot sandbox on a quiet 2-core machine, 20-30 ms under load).
    Unchecked-hash invalidation: the file is run directly, never compared with a source.
    """
    with tempfile.TemporaryDirectory(prefix="selfloop-harness-") as tmp:
        out = Path(tmp) / "harness.pyc"
        code = (
            "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile='/sandbox/harness.py', "
            "doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"
        )
        try:
            subprocess.run(
                [python, "-I", "-S", "-c", code, str(harness_path()), str(out)],
                capture_output=True,
                timeout=60,
                check=True,
            )
            return out.read_bytes()
        except (OSError, subprocess.SubprocessError):
            return None


@dataclass(frozen=True)
class Interpreter:
    """A Python that can run the harness, and the directory tree it needs (its prefix)."""

    path: str
    prefix: str
    version: str


@functools.cache
def interpreter(configured: str = "") -> Interpreter:
    """The configured interpreter, else /usr/bin/python3 (world-readable, lives under /usr),
    else the running one. Asks the interpreter itself for its prefix and version."""
    choices = [configured] if configured else ["/usr/bin/python3", sys.executable]
    for choice in choices:
        path = shutil.which(choice) or choice
        if not os.path.isfile(path):
            continue
        try:
            out = subprocess.run(
                [path, "-I", "-S", "-c", "import sys; print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if len(out) == 2 and tuple(int(x) for x in out[1].split(".")) >= (3, 9):
            return Interpreter(path=os.path.realpath(path), prefix=out[0], version=out[1])
    raise SelfloopError(
        f"no usable Python for the sandbox (tried {', '.join(choices)}); set sandbox.python to a Python >= 3.9"
    )
