"""The `selfloop` command line.

The parser is built from plain argparse and every handler is named as
``"module:function"`` and imported only when its command runs: `--help`,
`status` and `sandbox check` must not pay for importing torch/transformers.

A handler takes the parsed namespace and returns an exit code:
0 ok, 1 runtime failure, 2 usage or config error. Errors that the user can act
on are ``SelfloopError`` and print as one line; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from selfloop.errors import ConfigError, SelfloopError


def _global_options(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-c and --debug, before or after a (sub)command.

    A subcommand's copy has no default (SUPPRESS), so it sets the value only when given there
    and never resets one given before the subcommand.
    """
    unset = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument(
        "-c", "--config", **({"default": "config.toml"} | unset), help="config file (default: ./config.toml)"
    )
    p.add_argument("--debug", action="store_true", **unset, help="show tracebacks and debug logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfloop",
        description="Self-improving retraining daemon: watch a corpus, rework it with the current model, "
        "judge every candidate in a sandbox, retrain, promote only what is better, repeat.",
    )
    _global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"selfloop {__import__('selfloop').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        _global_options(p)
        return p

    p = cmd(
        "init",
        "selfloop.cli.project:cmd_init",
        "create config.toml, corpus/orig (starter corpus), corpus/rework and the state dir",
    )
    p.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    p.add_argument("--empty", action="store_true", help="do not copy the starter corpus")

    p = cmd(
        "validate-config",
        "selfloop.cli.project:cmd_validate_config",
        "check a config file; prints OK or one line per error",
    )
    p.add_argument("path", nargs="?", default=None, help="the config file (default: -c, else ./config.toml)")

    cmd(
        "ingest",
        "selfloop.cli.ingest:cmd_ingest",
        "ingest orig/ and rework/ once and print what was accepted and dropped",
    )

    p = cmd(
        "status",
        "selfloop.cli.project:cmd_status",
        "documents, quarantined files, generations, last cycle, daemon liveness",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--files",
        action="store_true",
        help="every corpus file's outcome: accepted documents, dropped ones by reason (with line numbers), quarantine",
    )

    p = cmd("run", "selfloop.cli.run:cmd_run", "run the daemon: ingest, watch, and cycle forever")
    p.add_argument("--headless", action="store_true", help="plain log lines instead of the live dashboard")

    p = cmd(
        "cycle",
        "selfloop.cli.cycle:cmd_cycle",
        "run one whole cycle (ingest, rework, judge, train, evaluate, gate, promote)",
    )
    p.add_argument("--once", action="store_true", required=True, help="run exactly one cycle and exit")

    p = cmd(
        "models",
        "selfloop.cli.models:cmd_models",
        "list generations with their figures and gate decisions, and the recipe search history",
    )
    p.add_argument(
        "--recipes", type=int, default=20, metavar="N", help="show the last N recipes of the recipe search (default 20)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output: every manifest and the recipes")
    p.add_argument(
        "--plot", metavar="PATH.png", default=None, help="write a PNG of the training loss of each generation on disk"
    )

    p = cmd("rollback", "selfloop.cli.models:cmd_rollback", "make the previous (or a given) generation current again")
    p.add_argument("--to", type=int, default=None, metavar="N", help="generation to restore")

    p = cmd("generate", "selfloop.cli.generate:cmd_generate", "sample from the current model")
    p.add_argument("prompt")
    p.add_argument("--n", type=int, default=1, help="samples")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn with the chat template")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)

    cmd("dashboard", "selfloop.cli.dashboard:cmd_dashboard", "attach a live view to a running daemon (read-only)")

    jg = sub.add_parser("judge", help="the text and chat judges", description="the text and chat judges")
    _global_options(jg)
    jgs = jg.add_subparsers(dest="judge_command", metavar="SUBCOMMAND", required=True)
    p = jgs.add_parser(
        "check", help='judge each line {"kind", "prompt", "a", "b"} of a JSONL file and print the verdicts'
    )
    p.set_defaults(handler="selfloop.cli.judge:cmd_check")
    _global_options(p)
    p.add_argument("file", help="JSONL: kind (text | chat), prompt, a (the original, or null), b (the candidate)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = jgs.add_parser("eval", help="precision, recall and F1 per judge and for the pipeline on a labelled JSONL file")
    p.set_defaults(handler="selfloop.cli.judge:cmd_eval")
    _global_options(p)
    p.add_argument("file", help='JSONL lines as for check, with "label": "good" | "bad" and an optional "why"')
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sb = sub.add_parser("sandbox", help="the eval-space sandbox", description="the eval-space sandbox")
    _global_options(sb)
    sbs = sb.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND", required=True)
    p = sbs.add_parser("check", help="run a Python candidate through the sandbox and print the verdict")
    p.set_defaults(handler="selfloop.cli.sandbox:cmd_check")
    _global_options(p)
    p.add_argument("file")
    p.add_argument("--backend", choices=["auto", "docker", "bwrap", "process"], default=None)
    p.add_argument("--tests", default=None, help="a Python file of tests (asserts / test_* functions)")
    p.add_argument("--timeout", type=float, default=None, help="seconds")
    p.add_argument("--memory", type=int, default=None, help="MiB")
    p.add_argument("--json", action="store_true")
    p = sbs.add_parser("info", help="which backends are available, and why not")
    p.set_defaults(handler="selfloop.cli.sandbox:cmd_info")
    _global_options(p)
    p.add_argument("--json", action="store_true")
    p = sbs.add_parser("build", help="build the sandbox Docker image locally (no registry needed)")
    p.set_defaults(handler="selfloop.cli.sandbox:cmd_build")
    _global_options(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module_name, func_name = args.handler.split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        code = int(handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`selfloop status | head -1`): it has what it wanted. Point stdout at
        # /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConfigError as e:
        for line in e.lines:
            print(f"selfloop: config error: {line}", file=sys.stderr)
        if args.debug:
            raise
        return e.exit_code
    except SelfloopError as e:
        print(f"selfloop: {e}", file=sys.stderr)
        if args.debug:
            raise
        return e.exit_code
    except KeyboardInterrupt:
        print("selfloop: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: one line, traceback with --debug
        if args.debug:
            raise
        print(f"selfloop: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
