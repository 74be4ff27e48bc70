"""The eval space's judges: per-kind pipelines of named judges that accept or reject candidates.

    from selfloop.judge import Candidate, JudgeContext, Pipeline
    pipeline = Pipeline(JudgeContext(cfg.judge, sandbox=sandbox), kinds=["python", "task"])
    outcome = pipeline.judge(Candidate(kind="python", content=src))

New judges subclass `Judge` and register by name (`registry.register`, or the
``selfloop.judges`` entry point group).
"""

from selfloop.judge.base import Candidate, Judge, JudgeContext, JudgeVerdict, accept, reject
from selfloop.judge.pipeline import Outcome, Pipeline

__all__ = ["Candidate", "Judge", "JudgeContext", "JudgeVerdict", "Outcome", "Pipeline", "accept", "reject"]
