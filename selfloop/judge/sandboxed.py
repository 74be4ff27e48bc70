"""Shared machinery of judges that decide by running jobs in the sandbox.

Builds each candidate's jobs, runs a batch concurrently over the sandbox's workers, and turns the sandbox `Verdict`s
into a `JudgeVerdict`. Only a sandbox ``pass`` is an accept; any other status is a reject carrying the sandbox's
own reason and detail.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from selfloop.judge.base import Candidate, Judge, JudgeVerdict, accept, reject
from selfloop.sandbox.job import Job, Verdict


class SandboxJudge(Judge):
    """A judge that decides by running jobs in the sandbox.

    A candidate may need several jobs that must all pass (a program and its
    counterfactual variants, see `selfloop.judge.task_judge`). They run in order, each
    only after the previous one passed, so a candidate that fails its first job costs one
    job; jobs of different candidates run concurrently meanwhile.
    """

    @abstractmethod
    def job_for(self, candidate: Candidate) -> Job | list[Job] | JudgeVerdict:
        """The job (or jobs, which must all pass) that decide this candidate, or a verdict
        when no job is needed (bad input)."""

    def review(self, candidate: Candidate, verdict: Verdict) -> JudgeVerdict:
        """Turn the sandbox verdict into a judge verdict; subclasses may add policy."""
        return from_sandbox(self.name, verdict)

    def review_jobs(self, candidate: Candidate, verdicts: Sequence[Verdict]) -> JudgeVerdict:
        """The verdict of a candidate's jobs, in order, up to the first that did not pass:
        that one decides (the last one when all passed). Subclasses may name which job failed."""
        return self.review(candidate, verdicts[-1])

    def judge(self, candidate: Candidate) -> JudgeVerdict:
        return self.judge_batch([candidate])[0]

    def judge_batch(self, candidates: Sequence[Candidate]) -> list[JudgeVerdict]:
        sandbox = self.context.require_sandbox(self.name)
        planned = [self.job_for(c) for c in candidates]
        out: list[JudgeVerdict | None] = [p if isinstance(p, JudgeVerdict) else None for p in planned]
        chains = {
            i: [p] if isinstance(p, Job) else list(p) for i, p in enumerate(planned) if not isinstance(p, JudgeVerdict)
        }
        done: dict[int, list[Verdict]] = {i: [] for i in chains}
        if chains:
            workers = max(1, min(sum(len(c) for c in chains.values()), getattr(sandbox, "capacity", 1)))
            with ThreadPoolExecutor(max_workers=workers) as ex:
                running: dict[Future[Verdict], int] = {
                    ex.submit(sandbox.run, chain[0]): i for i, chain in chains.items()
                }
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        i = running.pop(future)
                        done[i].append(future.result())
                        step = len(done[i])
                        if done[i][-1].passed and step < len(chains[i]):
                            running[ex.submit(sandbox.run, chains[i][step])] = i
            for i, verdicts in done.items():
                out[i] = self.review_jobs(candidates[i], verdicts)
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
