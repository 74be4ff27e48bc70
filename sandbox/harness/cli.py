"""The harness's command line and its roles: ``harness`` (default; serve.py), ``server`` (server.py)
and ``tester`` (tester.py)."""

from __future__ import annotations

import os
import signal
import sys


class Args:
    """The command line. Parsed by hand: argparse (and the textwrap and regexes it pulls in) was
    about a quarter of a sandbox's start-up, and only selfloop itself starts the harness.

    --role harness|server|tester   (default harness)
    --serve                        handle jobs until stdin closes (warm worker)
    --pidns                        the harness owns its pid namespace: sweep it after each job
    --scratch DIR                  tmpfs for per-job scratch dirs (default /scratch)
    --rpc-in FD --rpc-out FD --result-fd FD   the server's and tester's channels
    """

    FLAGS = {"--serve": "serve", "--pidns": "pidns"}
    VALUES = {
        "--role": ("role", str),
        "--scratch": ("scratch", str),
        "--rpc-in": ("rpc_in", int),
        "--rpc-out": ("rpc_out", int),
        "--result-fd": ("result_fd", int),
    }

    def __init__(self, argv: list[str]) -> None:
        self.role, self.scratch = "harness", "/scratch"
        self.serve = self.pidns = False
        self.rpc_in = self.rpc_out = self.result_fd = None
        it = iter(argv)
        for arg in it:
            if arg in self.FLAGS:
                setattr(self, self.FLAGS[arg], True)
            elif arg in self.VALUES:
                name, kind = self.VALUES[arg]
                value = next(it, None)
                if value is None:
                    raise SystemExit(f"harness: {arg} needs a value")
                try:
                    setattr(self, name, kind(value))
                except ValueError:
                    raise SystemExit(f"harness: {arg} {value!r} is not a valid {kind.__name__}") from None
            else:
                raise SystemExit(f"harness: unknown argument {arg!r}\n{self.__doc__}")
        if self.role not in ("harness", "server", "tester"):
            raise SystemExit(f"harness: --role must be harness, server or tester, not {self.role!r}")


def main(argv: list[str] | None = None) -> int:
    args = Args(sys.argv[1:] if argv is None else argv)
    # Each role imports only its own modules: the server and tester are forked per job.
    if args.role == "server":
        from .server import server_main

        return server_main(args.rpc_in, args.rpc_out)
    if args.role == "tester":
        from .tester import tester_main

        return tester_main(args.rpc_in, args.rpc_out, args.result_fd)
    if args.pidns and not (os.getppid() == 1 and os.getpid() < 1000):
        # A guard against ever sweeping a shared pid namespace: only an init's direct child may.
        print("harness: --pidns given but this process is not the tenant of its own pid namespace", file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from .serve import harness_main

    return harness_main(args)
