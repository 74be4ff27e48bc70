"""Client side of the eval space: run untrusted code in a sandbox and get a `Verdict`.

    from selfloop.sandbox import Job, Sandbox
    with Sandbox(cfg.sandbox) as sb:
        verdict = sb.run(Job(files={"main.py": src}, entry="main.py"))

Backends: docker | bwrap | process (see `backend.choose`). What runs inside the
sandbox is the top-level ``sandbox/harness/`` package (stdlib only).
"""

from selfloop.sandbox.job import STATUSES, Job, Limits, Status, Verdict
from selfloop.sandbox.pool import Sandbox
from selfloop.sandbox.worker import SandboxUnavailable

__all__ = ["STATUSES", "Job", "Limits", "Sandbox", "SandboxUnavailable", "Status", "Verdict"]
