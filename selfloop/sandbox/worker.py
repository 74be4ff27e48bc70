"""A running harness in some sandbox, seen as a line channel: send job lines, read result lines.

Covers the channel (a reader thread feeding a queue so reads can have deadlines),
the start handshake (the harness's hello line must name the protocol and the
sha256 of the harness we ship, so a stale image is caught) and one job exchange.
It does not know how a sandbox is made: backends construct workers.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from selfloop.sandbox.job import Limits

log = logging.getLogger(__name__)

PROTOCOL = 1
MAX_LINE = 64 * 1024 * 1024


class SandboxUnavailable(Exception):
    """A sandbox could not be started or answered nonsense before any job ran."""


class Worker(ABC):
    """One harness process inside one sandbox instance."""

    backend: str = "?"

    def __init__(self, limits: Limits) -> None:
        self.limits = limits  # what every job on this worker runs under
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.jobs_done = 0
        self._stderr_tail: list[bytes] = []
        self._closed = False
        self._eof = threading.Event()

    # ---- what a backend provides

    @abstractmethod
    def send(self, data: bytes) -> None: ...

    @abstractmethod
    def kill(self) -> None:
        """Stop the sandbox and every process in it; idempotent; waits until gone."""

    def alive(self) -> bool:
        return not self._closed and not self._eof.is_set()

    def killed_by_memory_limit(self) -> bool:
        """Whether the sandbox as a whole was OOM-killed (docker knows; others cannot tell)."""
        return False

    # ---- shared machinery

    def _pump(self, chunks: Iterator[tuple[int, bytes]]) -> None:
        """Split stdout chunks into lines for `lines`; keep a little stderr for diagnostics."""
        buf = bytearray()
        try:
            for stream, chunk in chunks:
                if stream == 2:
                    self._stderr_tail = (self._stderr_tail + [chunk])[-20:]
                    continue
                buf += chunk
                while (i := buf.find(b"\n")) >= 0:
                    self.lines.put(bytes(buf[:i]))
                    del buf[: i + 1]
                if len(buf) > MAX_LINE:
                    buf.clear()  # a line this long is not a result; drop it rather than grow forever
        except (OSError, ValueError) as e:  # socket closed under us during kill
            log.debug("worker channel closed: %s", e)
        finally:
            self._eof.set()
            self.lines.put(None)

    def start_reader(self, chunks: Iterator[tuple[int, bytes]]) -> None:
        threading.Thread(target=self._pump, args=(chunks,), name=f"sandbox-{self.backend}-reader", daemon=True).start()

    def stderr_tail(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", "replace")[-2000:]

    def handshake(self, harness_sha: str, timeout_s: float) -> None:
        line = self._next_line(time.monotonic() + timeout_s)
        if line is None:
            self.kill()
            tail = self.stderr_tail().strip()
            raise SandboxUnavailable(
                f"{self.backend} sandbox did not start" + (f": {tail.splitlines()[-1]}" if tail else "")
            )
        try:
            hello = json.loads(line)
        except ValueError:
            hello = {}
        if not isinstance(hello, dict) or hello.get("hello") != "selfloop-harness" or hello.get("protocol") != PROTOCOL:
            self.kill()
            raise SandboxUnavailable(
                f"{self.backend} sandbox answered with something that is not the selfloop harness: {line[:120]!r}"
            )
        if hello.get("sha256") != harness_sha:
            self.kill()
            raise SandboxUnavailable(
                f"the {self.backend} sandbox runs a different harness than this selfloop ships "
                f"(image is stale): rebuild it with `selfloop sandbox build`"
            )

    def exchange(self, payload: dict[str, Any], deadline: float) -> tuple[dict[str, Any] | None, str | None, int]:
        """Send one job; return (result, problem, foreign_lines).

        Lines without this job's nonce are counted, not trusted: they can only be
        a candidate writing onto the channel.
        """
        nonce = payload["nonce"]
        foreign = 0
        try:
            self.send((json.dumps(payload) + "\n").encode())
        except OSError:
            return None, "died", 0
        while True:
            line = self._next_line(deadline)
            if line is None:
                return None, ("deadline" if time.monotonic() >= deadline else "died"), foreign
            try:
                result = json.loads(line)
            except ValueError:
                foreign += 1
                continue
            if isinstance(result, dict) and result.get("nonce") == nonce:
                self.jobs_done += 1
                return result, None, foreign
            foreign += 1

    def _next_line(self, deadline: float) -> bytes | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            line = self.lines.get(timeout=remaining)
        except queue.Empty:
            return None
        if line is None:
            self.lines.put(None)  # stay at EOF for later readers
        return line
