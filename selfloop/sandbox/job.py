"""What goes into the sandbox (`Job`) and what comes out (`Verdict`), plus the rule
that turns a raw harness result into a verdict.

Pure data and pure logic: no processes, no I/O. The trust rule lives here:
a verdict is ``pass`` only when the harness result carries this job's nonce,
at least one check ran, and every check passed. Anything else -- a missing or
foreign result, a result without the nonce, a "pass" with no checks -- is not a
pass, whatever the exit code was.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "error", "timeout", "memory", "output_limit", "sandbox_error"]
STATUSES: tuple[str, ...] = ("pass", "fail", "error", "timeout", "memory", "output_limit", "sandbox_error")
# Statuses the harness itself may report; sandbox_error is decided only out here.
HARNESS_STATUSES = frozenset(STATUSES) - {"sandbox_error"}
MAX_JOB_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-job limits, applied by the harness to every process of the job."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    file_mb: int = 64
    output_kb: int = 1024
    nofile: int = 64
    nproc: int = 0  # RLIMIT_NPROC; 0 = not set (the backend bounds processes another way)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    """A unit of work for the sandbox.

    files:    relative path -> text; ``.py`` files are compiled first.
    entry:    a file to run as a program (``python entry``); its stdout is the
              answer unless ``answer`` is given.
    tests:    trusted test code (module-level asserts and/or ``test_*`` functions);
              candidate modules are imported by name (``from solution import f``),
              and the public names of ``module`` are preloaded.
    module:   the candidate module whose names the tests see directly.
    doctests: run the doctests found in the candidate's ``.py`` files.
    checker:  trusted source defining ``check(answer: str) -> bool``.
    answer:   a direct answer to check (instead of the program's stdout).
    expected: the exact expected answer (compared after stripping whitespace).
    stdin:    text given to the program on stdin.
    """

    files: dict[str, str] = field(default_factory=dict)
    entry: str | None = None
    tests: str | None = None
    module: str | None = None
    doctests: bool = False
    checker: str | None = None
    answer: str | None = None
    expected: str | None = None
    stdin: str = ""

    def validate(self) -> None:
        """Raise ValueError naming what is wrong; a job must check something."""
        for name in self.files:
            norm = os.path.normpath(name)
            if not name or os.path.isabs(name) or norm.startswith("..") or "\0" in name:
                raise ValueError(f"bad file name {name!r}: must be a relative path inside the scratch dir")
        if self.entry is not None and self.entry not in self.files:
            raise ValueError(f"entry {self.entry!r} is not one of the job's files")
        if self.module is not None and f"{self.module.replace('.', '/')}.py" not in self.files:
            raise ValueError(f"module {self.module!r} has no file {self.module.replace('.', '/')}.py in the job")
        if not (
            self.entry
            or self.tests
            or self.doctests
            or self.checker is not None
            or self.expected is not None
            or self.files
        ):
            raise ValueError(
                "the job checks nothing: give files, an entry, tests, doctests, a checker or an expected answer"
            )
        if (self.checker is not None or self.expected is not None) and self.answer is None and not self.entry:
            raise ValueError("a checker or expected answer needs an answer or an entry program whose output is checked")
        size = sum(len(v) for v in self.files.values()) + sum(
            len(x or "") for x in (self.tests, self.checker, self.answer, self.expected, self.stdin)
        )
        if size > MAX_JOB_BYTES:
            raise ValueError(f"the job is {size} bytes; the limit is {MAX_JOB_BYTES}")

    def payload(self, limits: Limits, nonce: str) -> dict[str, Any]:
        """The wire form sent to the harness."""
        return {
            "nonce": nonce,
            "files": dict(self.files),
            "entry": self.entry,
            "tests": self.tests,
            "module": self.module,
            "doctests": self.doctests,
            "checker": self.checker,
            "answer": self.answer,
            "expected": self.expected,
            "stdin": self.stdin,
            "limits": limits.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    backend: str
    wall_ms: float
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    checks_run: int = 0
    checks_passed: int = 0
    checks: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = list(self.checks)
        d["failures"] = list(self.failures)
        return d


def sandbox_error(reason: str, backend: str, wall_ms: float = 0.0) -> Verdict:
    return Verdict(status="sandbox_error", reason=reason, backend=backend, wall_ms=wall_ms)


def verdict_from_result(
    result: Any,
    nonce: str,
    backend: str,
    wall_ms: float,
    *,
    problem: str | None = None,
    timeout_s: float = 0.0,
    foreign_lines: int = 0,
) -> Verdict:
    """Decide a verdict from what came back on the result channel.

    ``problem`` is what went wrong with the channel itself: "deadline" (no result
    in time, the worker was killed), "died" (the worker ended without a result),
    "memory" (the worker was killed by the memory limit). ``foreign_lines``
    counts lines on the channel that did not carry this job's nonce.
    """
    if problem == "deadline":
        return Verdict("timeout", f"no result within {timeout_s:g} s; the sandbox was killed", backend, wall_ms)
    if problem == "memory":
        return Verdict("memory", "the sandbox was killed by its memory limit during the job", backend, wall_ms)
    if problem == "died":
        return Verdict(
            "error",
            "the sandbox worker ended during the job without a result (killed or starved by the candidate)",
            backend,
            wall_ms,
        )
    if not isinstance(result, dict):
        return Verdict("error", "the sandbox returned no result", backend, wall_ms)
    if result.get("nonce") != nonce:
        return Verdict(
            "error", "the result does not carry this job's nonce (forged or corrupt); rejected", backend, wall_ms
        )
    status = result.get("status")
    run, ok = result.get("checks_run"), result.get("checks_passed")
    if status not in HARNESS_STATUSES or type(run) is not int or type(ok) is not int or not 0 <= ok <= run:
        return Verdict("error", f"malformed result from the sandbox (status {status!r})", backend, wall_ms)
    reason = str(result.get("reason", ""))
    if foreign_lines:
        status, reason = (
            "error",
            f"{foreign_lines} foreign line(s) appeared on the result channel (forgery attempt); rejected",
        )
    elif status == "pass" and not (run > 0 and ok == run):
        status, reason = "fail", f"the sandbox claimed a pass with {ok} of {run} checks passed; not a pass"
    exit_code = result.get("exit_code")
    return Verdict(
        status=status,
        reason=reason,
        backend=backend,
        wall_ms=wall_ms,
        exit_code=exit_code if type(exit_code) is int else None,
        stdout=str(result.get("stdout", "")),
        stderr=str(result.get("stderr", "")),
        checks_run=run,
        checks_passed=ok,
        checks=tuple(str(c) for c in result.get("checks", []) or []),
        failures=tuple(str(f) for f in result.get("failures", []) or []),
    )
