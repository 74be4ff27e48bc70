"""Shared machinery of judges that decide by running a job in the sandbox:
build a `Job` per candidate, run a batch concurrently over the sandbox's
workers, and turn each sandbox `Verdict` into a `JudgeVerdict`.

Only a sandbox ``pass`` is an accept; every other status is a reject whose
reason and detail carry the sandbox's own (status, backend, checks, failures).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from selfloop.judge.base import Candidate, Judge, JudgeVerdict, accept, reject
from selfloop.sandbox.job import Job, Verdict


class SandboxJudge(Judge):
    @abstractmethod
    def job_for(self, candidate: Candidate) -> Job | JudgeVerdict:
        """The job that decides this candidate, or a verdict when no job is needed (bad input)."""

    def review(self, candidate: Candidate, verdict: Verdict) -> JudgeVerdict:
        """Turn the sandbox verdict into a judge verdict; subclasses may add policy."""
        return from_sandbox(self.name, verdict)

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        return self.judge_batch([candidate])[0]

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        sandbox = self.context.require_sandbox(self.name)
        planned = [self.job_for(c) for c in candidates]
        jobs = [(i, p) for i, p in enumerate(planned) if isinstance(p, Job)]
        out: list[JudgeVerdict | None] = [p if isinstance(p, JudgeVerdict) else None for p in planned]
        if jobs:
            with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), getattr(sandbox, "capacity", 1)))) as ex:
                for (i, _), verdict in zip(jobs, ex.map(lambda ij: sandbox.run(ij[1]), jobs), strict=True):
                    out[i] = self.review(candidates[i], verdict)
        return [v for v in out if v is not None]


def from_sandbox(judge: str, v: Verdict) -> JudgeVerdict:
    detail = {
        "sandbox_status": v.status,
        "backend": v.backend,
        "wall_ms": v.wall_ms,
        "checks_run": v.checks_run,
        "checks_passed": v.checks_passed,
        "checks": list(v.checks),
        "failures": list(v.failures)[:20],
    }
    score = v.checks_passed / v.checks_run if v.checks_run else 0.0
    if v.passed:
        return accept(judge, v.reason, score, **detail)
    return reject(judge, f"{v.status}: {v.reason}", score, **detail)
