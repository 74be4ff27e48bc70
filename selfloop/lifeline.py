"""Is the process that started us still alive? For children that must not outlive the daemon.

Used by the training child (it saves a checkpoint and stops) and by the ingest
analysis workers (they exit). A pid is paired with its start time, so a recycled
pid is not mistaken for the process it once named.

Does not cover: signalling children (the daemon's own shutdown does that); this is
for the case where the daemon is gone without having said anything, as after kill -9.
"""

from __future__ import annotations

import time


class ParentWatch:
    """Is the process with this pid still the one that was there when we started? (Checked at most once a second.)"""

    def __init__(self, pid: int):
        import psutil

        self.pid = pid
        try:
            self.started = psutil.Process(pid).create_time()
        except psutil.Error:
            self.started = None  # already gone
        self._checked = 0.0
        self._alive = self.started is not None

    def alive(self) -> bool:
        import psutil

        now = time.monotonic()
        if self._alive and now - self._checked >= 1.0:
            self._checked = now
            try:
                self._alive = psutil.Process(self.pid).create_time() == self.started
            except psutil.Error:
                self._alive = False
        return self._alive
