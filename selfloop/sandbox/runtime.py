"""Where the in-sandbox pieces come from on this machine: the harness package and the
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


def harness_dir() -> Path:
    """The harness package in a source checkout (``sandbox/harness/``) or inside the installed wheel."""
    pkg = Path(selfloop.__file__).resolve().parent
    for candidate in (pkg.parent / "sandbox" / "harness", pkg / "_starter" / "sandbox" / "harness"):
        if (candidate / "__main__.py").is_file():
            return candidate
    raise SelfloopError("the sandbox harness (sandbox/harness/) is missing from this installation")


def harness_files() -> dict[str, bytes]:
    """The harness package as shipped: each .py file's name -> its bytes."""
    return {p.name: p.read_bytes() for p in sorted(harness_dir().glob("*.py"))}


def package_digest(files: dict[str, bytes]) -> str:
    """sha256 over a package's files, by the rule the harness applies to its own at hello
    (sandbox/harness/common.py ``package_digest``): name, NUL, 8-byte length, bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def harness_sha256() -> str:
    return package_digest(harness_files())


@functools.cache
def compiled_harness(python: str) -> dict[str, bytes] | None:
    """The harness package compiled by the interpreter that will run it (each ``NAME.pyc`` -> bytes, to sit
    where the sources would: sourceless imports), or None if it cannot be.

    A sandbox that starts from the .pyc files skips compiling the harness at every start
    (7 ms of a ~50 ms one-shot sandbox on a quiet 2-core machine, 20-30 ms under load).
    Unchecked-hash invalidation: the files are run directly, never compared with a source.
    """
    with tempfile.TemporaryDirectory(prefix="selfloop-harness-") as tmp:
        code = (
            "import py_compile, sys\n"
            "for src in sys.argv[2:]:\n"
            "    name = src.rsplit('/', 1)[1]\n"
            "    py_compile.compile(src, cfile=f'{sys.argv[1]}/{name}c', dfile=f'/sandbox/harness/{name}',"
            " doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        )
        sources = sorted(str(p) for p in harness_dir().glob("*.py"))
        try:
            subprocess.run([python, "-I", "-S", "-c", code, tmp, *sources], capture_output=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).glob("*.pyc"))}


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
