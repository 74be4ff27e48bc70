"""The backend interface, and the worker for harnesses reached through a local child process (bwrap, process).

A backend knows how to start one harness inside one fresh sandbox instance and how to tell
whether it can do so on this machine (construction raises ``SandboxUnavailable`` with why).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import IO

from selfloop.config import SandboxConfig
from selfloop.sandbox.job import Limits
from selfloop.sandbox.runtime import harness_sha256
from selfloop.sandbox.worker import Worker

log = logging.getLogger(__name__)


class Backend(ABC):
    name: str = "?"
    isolation: str = ""
    pidns: bool = False  # each worker owns a pid namespace (kill(-1)-style cases are contained)

    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg

    @abstractmethod
    def start_worker(self, serve: bool) -> Worker:
        """Start a harness in a fresh sandbox instance; the caller does the handshake."""

    def limits(self) -> Limits:
        cfg = self.cfg
        return Limits(
            timeout_s=cfg.timeout_s,
            memory_mb=cfg.memory_mb,
            file_mb=cfg.file_mb,
            output_kb=cfg.output_kb,
            nofile=cfg.nofile,
        )

    def harness_digest(self) -> str:
        """The sha256 a worker's harness reports of its own file at handshake (the shipped source)."""
        return harness_sha256()

    def close(self) -> None:
        """Release backend-wide resources (clients, probes)."""


def harness_args(serve: bool, pidns: bool, scratch: str) -> list[str]:
    return [*(["--serve"] if serve else []), *(["--pidns"] if pidns else []), "--scratch", scratch]


class PopenWorker(Worker):
    """A harness reached through a child process's stdin/stdout (bwrap, process)."""

    def __init__(self, backend: str, argv: list[str], limits: Limits, *, cleanup: str | None = None, **popen_kw):
        super().__init__(limits)
        self.backend = backend
        self.host_uid: int | None = None  # the unprivileged host uid the sandbox runs as, when chosen
        self._cleanup = cleanup
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **popen_kw,
        )
        self.start_reader(self._chunks())
        threading.Thread(target=self._drain_stderr, name=f"sandbox-{backend}-stderr", daemon=True).start()

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        out: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        while chunk := out.read1(65536):
            yield 1, chunk

    def _drain_stderr(self) -> None:
        err: IO[bytes] = self.proc.stderr  # type: ignore[assignment]
        while chunk := err.read1(65536):
            self._stderr_tail = (self._stderr_tail + [chunk])[-20:]

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return super().alive() and self.proc.poll() is None

    def kill(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.host_uid is not None:
            # The namespace's processes die asynchronously after bwrap; wait so "killed" means gone.
            deadline = time.monotonic() + 5
            while live_processes_of(self.host_uid) and time.monotonic() < deadline:
                time.sleep(0.002)  # usually gone within a few ms; a one-shot verdict waits for this
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if self._cleanup:
            shutil.rmtree(self._cleanup, ignore_errors=True)


def live_processes_of(uid: int) -> list[int]:
    """Pids owned by `uid` that are not zombies."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            found.append(int(entry))
    return found
