"""`selfloop run`: the daemon in the foreground, with the live dashboard on a terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from selfloop.loop.daemon import Daemon


def cmd_run(args: Any) -> int:
    headless = args.headless or not sys.stdout.isatty()
    return Daemon(Path(args.config), headless=headless, debug=getattr(args, "debug", False)).run()
