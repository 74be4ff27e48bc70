"""Errors that end a command with a clear one-line message and a defined exit code.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 another daemon holds the state dir (a service
manager must not restart on 2 or 3: see deploy/selfloop.service).
"""

from __future__ import annotations


class SelfloopError(Exception):
    """A failure the user can act on; the CLI prints it as one line (no traceback)."""

    exit_code = 1


class ConfigError(SelfloopError):
    """Invalid configuration: every line names the key, the value and what is allowed."""

    exit_code = 2

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or [message]


class UsageError(SelfloopError):
    exit_code = 2


class AlreadyRunning(SelfloopError):
    """Another daemon holds the state dir's lock."""

    exit_code = 3
