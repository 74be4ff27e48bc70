"""`Sandbox`: run jobs on a backend, through a warm pool or one-shot sandboxes.

Covers worker lifecycle and the per-job exchange (fresh nonce, wall limit plus a grace, the result as a `Verdict`).
A worker is discarded after a timeout, memory kill, output flood, leaked process, anything odd on its channel, or
``recycle_after`` jobs; ``pool_size = 0`` gives every job a fresh sandbox. Thread-safe: at most
``max(pool_size, 1)`` jobs run at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from selfloop.config import SandboxConfig
from selfloop.sandbox.backends import Backend, choose
from selfloop.sandbox.job import Job, Verdict, sandbox_error, verdict_from_result
from selfloop.sandbox.worker import SandboxUnavailable, Worker

log = logging.getLogger(__name__)

# How long past the job's wall limit we wait for the harness's own timeout verdict.
GRACE_S = 0.75
RECYCLE_STATUSES = frozenset({"timeout", "memory", "output_limit", "sandbox_error"})


class Sandbox:
    """``run`` may be called from many threads; at most ``max(pool_size, 1)`` jobs run at
    once and the rest wait for a worker. Workers are always started from one long-lived
    thread, because bwrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread*
    that spawned it exits.
    """

    def __init__(self, cfg: SandboxConfig, backend: Backend | None = None):
        self.cfg = cfg
        self.backend = backend or choose(cfg)
        self.serve = cfg.pool_size > 0
        self.capacity = max(cfg.pool_size, 1)
        self._sha = self.backend.harness_digest()
        self._idle: list[Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._closed = False

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # ---- public

    def run(self, job: Job) -> Verdict:
        """Run one job; never raises for anything the candidate does."""
        try:
            job.validate()
        except ValueError as e:
            return Verdict("error", f"invalid job: {e}", self.backend.name, 0.0)
        try:
            worker = self._acquire()
        except SandboxUnavailable as e:
            return sandbox_error(str(e), self.backend.name)
        nonce = secrets.token_hex(16)
        limits = worker.limits
        start = time.monotonic()
        result, problem, foreign = worker.exchange(job.payload(limits, nonce), start + limits.timeout_s + GRACE_S)
        wall_ms = round((time.monotonic() - start) * 1000, 1)
        if problem == "died" and worker.killed_by_memory_limit():
            problem = "memory"
        verdict = verdict_from_result(
            result,
            nonce,
            self.backend.name,
            wall_ms,
            problem=problem,
            timeout_s=limits.timeout_s,
            foreign_lines=foreign,
        )
        leaked = bool(result.get("leak")) if isinstance(result, dict) else False
        if leaked:
            log.warning("sandbox job left a process behind; recycling the %s worker", self.backend.name)
        keep = (
            self.serve
            and problem is None
            and not foreign
            and not leaked
            and verdict.status not in RECYCLE_STATUSES
            and worker.jobs_done < self.cfg.recycle_after
        )
        self._release(worker, keep)
        return verdict

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for w in idle:
            w.kill()
        self._spawner.shutdown(wait=True)
        self.backend.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm(self) -> None:
        """Start the pool's workers now instead of on first use."""
        started = [self._start() for _ in range(self.cfg.pool_size)]
        with self._cond:
            self._idle.extend(started)
            self._cond.notify_all()

    # ---- pool bookkeeping

    def _acquire(self) -> Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxUnavailable("the sandbox is closed")
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        self._busy += 1
                        return w
                    w.kill()
                if self._busy < self.capacity:
                    self._busy += 1
                    break
                self._cond.wait()
        try:
            return self._start()
        except BaseException:
            with self._cond:
                self._busy -= 1
                self._cond.notify()
            raise

    def _release(self, worker: Worker, keep: bool) -> None:
        if not keep:
            worker.kill()
        with self._cond:
            self._busy -= 1
            if keep and not self._closed:
                self._idle.append(worker)
            self._cond.notify()
        if keep and self._closed:
            worker.kill()

    def _start(self) -> Worker:
        worker = self._spawner.submit(self.backend.start_worker, self.serve).result()
        worker.handshake(self._sha, self.cfg.startup_timeout_s)
        return worker
