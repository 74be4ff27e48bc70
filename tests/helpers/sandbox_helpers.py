"""Shared helpers for the sandbox and judge tests: backends that work here (or a
clear skip; in CI a missing docker/bwrap fails instead) and leftover-process checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from selfloop.config import SandboxConfig
from selfloop.sandbox import Sandbox
from selfloop.sandbox.backends import Backend, make_backend
from selfloop.sandbox.backends.bwrap import UID_BASE, UID_SPAN
from selfloop.sandbox.backends.docker import OWNER_LABEL, owner_tag
from selfloop.sandbox.worker import SandboxUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"


# A benign job takes about 0.1 s; its limit is generous because a stalled CI host once took a docker
# doctest job past 2 s. Tests that expect a timeout pass their own short `timeout_s`.
BENIGN_TIMEOUT_S = 10.0


def config(**kw) -> SandboxConfig:
    base = {"timeout_s": BENIGN_TIMEOUT_S, "memory_mb": 256, "pids": 32, "file_mb": 16, "output_kb": 64, "pool_size": 0}
    return SandboxConfig(**{**base, **kw})


def backend_or_skip(name: str, cfg: SandboxConfig) -> Backend:
    """The named backend (``make_backend`` builds a missing or stale docker image itself)."""
    try:
        return make_backend(name, cfg)
    except SandboxUnavailable as e:
        reason = str(e)
    if IN_CI and name in ("docker", "bwrap"):
        pytest.fail(f"{name} sandbox backend unavailable in CI: {reason}")
    pytest.skip(f"{name} sandbox backend unavailable here: {reason}")


def bwrap_sandbox_pids() -> list[int]:
    """Live (non-zombie) processes running as a bwrap sandbox host uid (root-started sandboxes use that range)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if UID_BASE <= uid < UID_BASE + UID_SPAN and state not in (b"Z", b"X"):
                found.append(int(entry))
    return found


def docker_containers_of_this_process() -> list[str]:
    import docker

    client = docker.from_env()
    try:
        return [c.short_id for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner_tag()}"})]
    finally:
        client.close()


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def assert_no_leftovers(backend: str) -> None:
    if backend == "bwrap" and os.geteuid() == 0:
        assert bwrap_sandbox_pids() == []
    if backend == "docker":
        assert docker_containers_of_this_process() == []


def judge_sources(
    backend: str, model: Any = None, tokenizer: Any = None
) -> tuple[Callable[[], AbstractContextManager[Any]], Callable[[], AbstractContextManager[Sandbox]]]:
    """(model_source, sandbox_source) as ``run_judge`` takes them: a stand-in champion
    (generation 0) and a real two-worker sandbox on ``backend`` (the test skips without it)."""

    @contextmanager
    def model_source():
        yield SimpleNamespace(model=model, tokenizer=tokenizer, generation=0)

    @contextmanager
    def sandbox_source():
        sb_cfg = config(backend=backend, pool_size=2, timeout_s=3.0)
        with Sandbox(sb_cfg, backend_or_skip(backend, sb_cfg)) as sb:
            yield sb

    return model_source, sandbox_source
