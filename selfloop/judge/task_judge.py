"""The task judge: is the model's answer to a verifiable task correct? Decided in the sandbox.

Two ways to answer (``candidate.metadata["answer_kind"]``):

* ``answer`` -- the candidate's text is the answer. It is checked with the
  task's ``check(answer)`` checker when there is one, else compared exactly
  (whitespace-trimmed) with the task's reference ``answer``.
* ``program`` -- the candidate is a Python program (a fenced ```python block
  is extracted if present). With task ``tests`` the program is the solution
  module the tests import; otherwise it is run and its stdout is the answer,
  checked as above (tool use).

The default is ``program`` when the task has tests, else ``answer``. A program
that exits early, crashes, or tampers with the channel is caught by the
sandbox's nonce and check counting; the checker itself runs apart from the
candidate's code.
"""

from __future__ import annotations

import re

from selfloop.judge.base import Candidate, JudgeVerdict, reject
from selfloop.judge.sandboxed import SandboxJudge
from selfloop.judge.task_spec import task_field
from selfloop.sandbox.job import Job

MODULE = "solution"
FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block, or the text itself when there is none."""
    m = FENCE.search(text)
    return m.group(1) if m else text


class TaskJudge(SandboxJudge):
    name = "task"

    def job_for(self, candidate: Candidate) -> Job | JudgeVerdict:
        task = candidate.task
        if task is None:
            return reject(self.name, "a task candidate without its task record")
        checker, tests, reference = (task_field(task, k) for k in ("checker", "tests", "answer"))
        kind = candidate.metadata.get("answer_kind") or ("program" if tests else "answer")
        if kind not in ("answer", "program"):
            return reject(self.name, f"unknown answer_kind {kind!r} (answer | program)")
        if kind == "answer":
            if checker is None and reference is None:
                return reject(self.name, "the task has neither a checker nor a reference answer to check a direct answer")
            return Job(answer=candidate.content, checker=checker, expected=None if checker is not None else reference)
        code = extract_code(candidate.content)
        if not code.strip():
            return reject(self.name, "the answer contains no program")
        files = {f"{MODULE}.py": code}
        if tests:
            return Job(files=files, tests=tests, module=MODULE)
        if checker is None and reference is None:
            return reject(self.name, "the task has no tests, checker or reference answer to check a program against")
        return Job(files=files, entry=f"{MODULE}.py", checker=checker, expected=None if checker is not None else reference)
