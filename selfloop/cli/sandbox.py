"""`selfloop sandbox check | info | build`.

Kept free of torch/transformers imports so these commands start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selfloop.config import load_config
from selfloop.errors import SelfloopError, UsageError
from selfloop.sandbox.backends import ORDER, choose, make_backend, probe_all
from selfloop.sandbox.backends.bwrap import BwrapBackend
from selfloop.sandbox.backends.docker import DockerBackend
from selfloop.sandbox.backends.process import WARNING
from selfloop.sandbox.image import build_image
from selfloop.sandbox.job import Job, Verdict
from selfloop.sandbox.pool import Sandbox
from selfloop.sandbox.worker import SandboxUnavailable


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None


def cmd_check(args: argparse.Namespace) -> int:
    """Compile and run a Python file (plus optional tests) in the sandbox; exit 0 only on pass."""
    cfg, _ = load_config(args.config)
    updates: dict[str, object] = {"pool_size": 0}
    if args.backend:
        updates["backend"] = args.backend
    if args.timeout is not None:
        updates["timeout_s"] = args.timeout
    if args.memory is not None:
        updates["memory_mb"] = args.memory
    sb_cfg = cfg.sandbox.model_copy(update=updates)
    type(sb_cfg).model_validate(sb_cfg.model_dump())  # re-check the overridden limits
    source = _read(args.file, "file")
    tests = _read(args.tests, "tests file") if args.tests else None
    job = Job(
        files={"solution.py": source},
        entry="solution.py",
        tests=tests,
        module="solution" if tests else None,
        doctests=True,
    )
    try:
        backend = choose(sb_cfg)
    except SandboxUnavailable as e:
        verdict = Verdict("sandbox_error", str(e), sb_cfg.backend, 0.0)
    else:
        with Sandbox(sb_cfg, backend) as sandbox:
            verdict = sandbox.run(job)
    if args.json:
        print(json.dumps(verdict.to_dict()))
    else:
        _print_verdict(verdict, args.file)
    return 0 if verdict.passed else 1


def _print_verdict(v: Verdict, name: str) -> None:
    print(f"{name}: {v.status.upper()} -- {v.reason}")
    print(
        f"  backend {v.backend}, {v.wall_ms:.0f} ms, checks {v.checks_passed}/{v.checks_run}, exit code {v.exit_code}"
    )
    if v.backend == "process":
        print(f"  note: {WARNING}")
    for f in v.failures[:10]:
        print(f"  failed: {f}")
    for label, text in (("stdout", v.stdout), ("stderr", v.stderr)):
        if text.strip():
            lines = text.rstrip().splitlines()
            print(f"  {label} ({len(lines)} lines):")
            for line in lines[-10:]:
                print(f"    {line[:200]}")


def cmd_info(args: argparse.Namespace) -> int:
    """Each backend: available or why not, and which `auto` would pick."""
    cfg, _ = load_config(args.config)
    found = probe_all(cfg.sandbox)
    auto = next((name for name in ORDER if found[name] is None), None)
    notes = {"process": WARNING}
    rows = [
        {
            "backend": name,
            "available": found[name] is None,
            "reason": found[name] or "",
            "note": notes.get(name, ""),
            "isolation": _isolation(name),
        }
        for name in ORDER
    ]
    selected = cfg.sandbox.backend if cfg.sandbox.backend != "auto" else auto
    if args.json:
        print(
            json.dumps(
                {"configured": cfg.sandbox.backend, "selected": selected, "image": cfg.sandbox.image, "backends": rows}
            )
        )
        return 0
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{r['backend']:8} {state}")
        print(f"         {r['isolation']}")
        if r["note"]:
            print(f"         {r['note']}")
    print(f"configured: {cfg.sandbox.backend}; selected: {selected or 'none'}")
    return 0


def _isolation(name: str) -> str:
    return {
        "docker": DockerBackend.isolation,
        "bwrap": BwrapBackend.isolation,
        "process": "new session + rlimits (+ empty network namespace where permitted)",
    }[name]


def cmd_build(args: argparse.Namespace) -> int:
    """Build the docker image from this machine's Python (no registry), then prove it starts."""
    cfg, _ = load_config(args.config)
    info = build_image(cfg.sandbox)
    rootfs_mib = int(info["rootfs_bytes"]) / 2**20
    print(f"built {info['image']} ({info['id']}): Python {info['python']}, rootfs {rootfs_mib:.1f} MiB")
    try:
        backend = make_backend("docker", cfg.sandbox.model_copy(update={"backend": "docker", "pool_size": 0}))
    except SandboxUnavailable as e:
        raise SelfloopError(f"the image was built but cannot be used: {e}") from None
    with Sandbox(cfg.sandbox.model_copy(update={"pool_size": 0}), backend) as sandbox:
        v = sandbox.run(Job(files={"main.py": "print(6 * 7)"}, entry="main.py", expected="42"))
    if not v.passed:
        print(f"smoke test failed: {v.status}: {v.reason}", file=sys.stderr)
        return 1
    print(f"smoke test passed in {v.wall_ms:.0f} ms")
    return 0
