"""The task judge: is the model's answer to a verifiable task correct? Decided in the sandbox.

An ``answer`` candidate is checked by the task's checker or its reference answer; a ``program`` candidate is run
(stdout checked) or imported by the task's ``tests``. A program that prints the right answer without computing it
is caught by re-running it on the task's ``variants``; one that crashes, exits early or tampers with the channel,
by the sandbox's nonce and check counting. The checker runs apart from the candidate's code.

Does not cover: the sandbox (``selfloop.sandbox``), literal substitution (``selfloop.judge.substitute``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from selfloop.judge.base import Candidate, JudgeVerdict, reject
from selfloop.judge.sandboxed import SandboxJudge
from selfloop.judge.substitute import NotParsed, parse, substitute
from selfloop.judge.task_spec import task_field
from selfloop.records import Variant
from selfloop.sandbox.job import Job, Verdict

MODULE = "solution"
FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
HARD_CODED = "hard-coded: output does not follow the inputs"
_VARIANTS = TypeAdapter(list[Variant])


def extract_code(text: str) -> str:
    """The first fenced code block, or the text itself when there is none."""
    m = FENCE.search(text)
    return m.group(1) if m else text


class TaskJudge(SandboxJudge):
    """The task judge. Two ways to answer (``candidate.metadata["answer_kind"]``):

    * ``answer`` -- the candidate's text is the answer. It is checked with the
      task's ``check(answer)`` checker when there is one, else compared exactly
      (whitespace-trimmed) with the task's reference ``answer``.
    * ``program`` -- the candidate is a Python program (a fenced ```python block
      is extracted if present). With task ``tests`` the program is the solution
      module the tests import; otherwise it is run and its stdout is the answer,
      checked as above (tool use).

    The default is ``program`` when the task has tests, else ``answer``.

    Hard-coded output (``print(579)`` for ``123 + 456``): the stdout-checked program
    also runs once per task variant with the variant's literals replaced in its
    syntax tree (`selfloop.judge.substitute`), checked by the variant's checker or
    answer. It is accepted only if the program as written and every variant pass; a
    variant that fails, or a program that contains none of the literals a variant
    replaces, is rejected as ``hard-coded: output does not follow the inputs
    (variant N: ...)``; a program with none of the inputs runs as written only, so a
    plain wrong one is rejected for what it does. With variants, a program that does
    not parse is rejected before any job runs. Jobs run in order and stop at the
    first failure, so a program costs one sandbox job when it is wrong or ignores
    the inputs, and 1 + variants when it is right. Tasks without variants (user task
    files) and programs checked by ``tests`` are judged on the program as written only.
    """

    name = "task"

    def job_for(self, candidate: Candidate) -> Job | list[Job] | JudgeVerdict:
        task = candidate.task
        if task is None:
            return reject(self.name, "a task candidate without its task record")
        checker, tests, reference = (task_field(task, k) for k in ("checker", "tests", "answer"))
        kind = candidate.metadata.get("answer_kind") or ("program" if tests else "answer")
        if kind not in ("answer", "program"):
            return reject(self.name, f"unknown answer_kind {kind!r} (answer | program)")
        if kind == "answer":
            if checker is None and reference is None:
                return reject(
                    self.name, "the task has neither a checker nor a reference answer to check a direct answer"
                )
            return Job(answer=candidate.content, checker=checker, expected=None if checker is not None else reference)
        code = extract_code(candidate.content)
        if not code.strip():
            return reject(self.name, "the answer contains no program")
        files = {f"{MODULE}.py": code}
        if tests:
            return Job(files=files, tests=tests, module=MODULE)
        if checker is None and reference is None:
            return reject(self.name, "the task has no tests, checker or reference answer to check a program against")
        job = Job(
            files=files, entry=f"{MODULE}.py", checker=checker, expected=None if checker is not None else reference
        )
        try:
            variants = _VARIANTS.validate_python(task_field(task, "variants") or [])
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return reject(
                self.name,
                f"the task's variants are malformed ({e.error_count()} error(s); variants.{where}: {first['msg']})",
            )
        if not variants:
            return job
        more = self._variant_jobs(code, variants)
        return more if isinstance(more, JudgeVerdict) else [job, *more]

    def _variant_jobs(self, code: str, variants: list[Variant]) -> list[Job] | JudgeVerdict:
        try:
            tree = parse(code)
        except NotParsed as e:
            return reject(self.name, f"the program does not parse: {e}")
        jobs = []
        for n, variant in enumerate(variants, 1):
            try:
                rewritten = substitute(tree, variant.substitute)
            except NotParsed as e:
                return reject(self.name, f"the program cannot be rewritten for variant {n}: {e}")
            if not rewritten.replaced:
                # Nothing to vary: the program as written runs alone, so a plain wrong program is
                # rejected for what it does; one that passes is rejected as hard-coded (review_jobs).
                return []
            jobs.append(
                Job(
                    files={f"{MODULE}.py": rewritten.source},
                    entry=f"{MODULE}.py",
                    checker=variant.checker,
                    expected=None if variant.checker is not None else variant.answer,
                )
            )
        return jobs

    def review_jobs(self, candidate: Candidate, verdicts: Sequence[Verdict]) -> JudgeVerdict:
        """The program as written decides when it fails; a variant that fails, or a right program
        that contains none of the task's inputs, means a hard-coded answer."""
        variant = len(verdicts) - 1  # jobs stop at the first failure; job 0 is the program as written
        result = self.review(candidate, verdicts[-1])
        if variant == 0:
            ignored = self._ignored_inputs(candidate) if result.accepted else None
            if ignored is None:
                return result
            n, inputs = ignored
            return reject(
                self.name,
                f"{HARD_CODED} (variant {n}: the program contains none of the task's inputs {inputs})",
                0.0,
                **result.detail,
            )
        if result.accepted:
            return result
        return reject(self.name, f"{HARD_CODED} (variant {variant}: {result.reason})", result.score, **result.detail)

    def _ignored_inputs(self, candidate: Candidate) -> tuple[int, str] | None:
        """(variant number, its inputs) of the first variant none of whose inputs a stdout-checked
        program contains (job_for then ran the program as written only), else None."""
        task = candidate.task
        if candidate.metadata.get("answer_kind") != "program" or task_field(task, "tests"):
            return None  # a direct answer (the default without tests), or a program checked by tests
        try:
            variants = _VARIANTS.validate_python(task_field(task, "variants") or [])
            tree = parse(extract_code(candidate.content)) if variants else None
            for n, variant in enumerate(variants, 1):
                if not substitute(tree, variant.substitute).replaced:
                    return n, ", ".join(variant.substitute)
        except (ValidationError, NotParsed):
            pass  # job_for already rejected these without a job
        return None
