"""Entry point of every role: ``python -I -S /sandbox/harness/__main__.py [--serve] [--pidns] [--scratch DIR]``
(``__main__.pyc`` under bwrap; the launcher runs it for the server and tester roles)."""

import os
import sys

# Run as a file, not with -m (whose runpy costs every start): the package's parent goes on sys.path by hand.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.cli import main  # noqa: E402

sys.exit(main())
