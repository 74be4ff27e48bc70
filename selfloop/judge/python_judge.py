"""The python judge: a Python candidate must compile, run to exit status 0, and pass
its doctests and any tests given with it -- all inside the sandbox.

The candidate is written as ``solution.py`` and run as a program with empty
stdin; its doctests are collected and run against it; tests come from
``candidate.metadata["tests"]`` or the candidate's task record, and may call the
candidate's functions by bare name or ``from solution import ...``. With
``judge.python_require_tests`` a candidate that brings nothing to test beyond
"it runs" is rejected.
"""

from __future__ import annotations

from selfloop.judge.base import Candidate, JudgeVerdict, reject
from selfloop.judge.sandboxed import SandboxJudge, from_sandbox
from selfloop.judge.task_spec import task_field
from selfloop.sandbox.job import Job, Verdict

MODULE = "solution"
BASE_CHECKS = {"compile", "program exits 0"}


class PythonJudge(SandboxJudge):
    name = "python"

    def job_for(self, candidate: Candidate) -> Job | JudgeVerdict:
        if not candidate.content.strip():
            return reject(self.name, "empty Python candidate")
        tests = candidate.metadata.get("tests") or task_field(candidate.task, "tests")
        return Job(
            files={f"{MODULE}.py": candidate.content},
            entry=f"{MODULE}.py",
            tests=tests or None,
            module=MODULE if tests else None,
            doctests=True,
        )

    def review(self, candidate: Candidate, verdict: Verdict) -> JudgeVerdict:
        result = from_sandbox(self.name, verdict)
        if result.accepted and self.context.config.python_require_tests and set(verdict.checks) <= BASE_CHECKS:
            return reject(
                self.name, "no tests or doctests to run (judge.python_require_tests)", result.score, **result.detail
            )
        return result
