"""The commands' rich console: a closed pipe is left to ``selfloop.cli.main`` (exit 0, quietly), where rich's own
handling would exit 1."""

from __future__ import annotations

from rich.console import Console as _RichConsole


class Console(_RichConsole):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError
