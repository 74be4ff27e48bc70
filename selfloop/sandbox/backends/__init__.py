"""Sandbox backends (docker, bwrap, process) and ``choose``: ``auto`` picks docker > bwrap > process, with why."""

from __future__ import annotations

import logging

from selfloop.config import SandboxConfig
from selfloop.errors import SelfloopError
from selfloop.sandbox.backends.base import Backend
from selfloop.sandbox.backends.bwrap import BwrapBackend
from selfloop.sandbox.backends.docker import DockerBackend
from selfloop.sandbox.backends.process import ProcessBackend
from selfloop.sandbox.worker import SandboxUnavailable

log = logging.getLogger(__name__)
ORDER = ("docker", "bwrap", "process")
BACKENDS: dict[str, type[Backend]] = {"docker": DockerBackend, "bwrap": BwrapBackend, "process": ProcessBackend}


def make_backend(name: str, cfg: SandboxConfig) -> Backend:
    """Construct a named backend; raises SandboxUnavailable with the reason when it cannot run here."""
    if name in BACKENDS:
        return BACKENDS[name](cfg)
    raise SelfloopError(f"unknown sandbox backend {name!r} (choose from auto, {', '.join(ORDER)})")


def probe_all(cfg: SandboxConfig) -> dict[str, str | None]:
    """Each backend -> None when usable here, else the reason it is not."""
    found: dict[str, str | None] = {}
    for name in ORDER:
        try:
            make_backend(name, cfg).close()
            found[name] = None
        except (SandboxUnavailable, SelfloopError) as e:
            found[name] = str(e)
    return found


def choose(cfg: SandboxConfig) -> Backend:
    """The configured backend, or for ``auto`` the strongest one that works here (logged with why)."""
    if cfg.backend != "auto":
        return make_backend(cfg.backend, cfg)
    skipped = []
    for name in ORDER:
        try:
            backend = make_backend(name, cfg)
        except (SandboxUnavailable, SelfloopError) as e:
            skipped.append(f"{name}: {e}")
            continue
        log.info(
            "sandbox backend: %s (%s)%s", name, backend.isolation, f"; skipped {'; '.join(skipped)}" if skipped else ""
        )
        return backend
    raise SandboxUnavailable("no sandbox backend works here: " + "; ".join(skipped))
