"""Sandbox backends (docker, bwrap, process) and ``choose``: ``auto`` picks docker > bwrap > process, with why.

A docker engine that answers but lacks the sandbox image gets it built offline on first use.
"""

from __future__ import annotations

import logging
import time

from selfloop.config import SandboxConfig
from selfloop.errors import SelfloopError
from selfloop.sandbox.backends.base import Backend
from selfloop.sandbox.backends.bwrap import BwrapBackend
from selfloop.sandbox.backends.docker import DockerBackend, ImageMissing
from selfloop.sandbox.backends.process import ProcessBackend
from selfloop.sandbox.engine import engine_name
from selfloop.sandbox.image import build_image
from selfloop.sandbox.worker import SandboxUnavailable

log = logging.getLogger(__name__)
ORDER = ("docker", "bwrap", "process")
BACKENDS: dict[str, type[Backend]] = {"docker": DockerBackend, "bwrap": BwrapBackend, "process": ProcessBackend}
# (engine, image) pairs whose build failed in this process: not tried again at every cycle.
_failed_builds: set[tuple[str, str]] = set()


def make_backend(name: str, cfg: SandboxConfig) -> Backend:
    """Construct a named backend; raises SandboxUnavailable with the reason when it cannot run here.

    A docker backend whose engine lacks the image (or holds one for an older harness) builds it first, offline
    (``image.build_image``: seconds, no registry); a build that failed is not tried again by this process.
    """
    if name not in BACKENDS:
        raise SelfloopError(f"unknown sandbox backend {name!r} (choose from auto, {', '.join(ORDER)})")
    try:
        return BACKENDS[name](cfg)
    except ImageMissing as e:
        missing = str(e)
    key = (engine_name(cfg), cfg.image)
    if key in _failed_builds:
        raise SandboxUnavailable(f"{missing}; building it here failed (see the log): try `selfloop sandbox build`")
    log.info("sandbox %s: building it offline now on %s", missing, key[0])
    started = time.monotonic()
    try:
        built = build_image(cfg)
    except Exception as e:  # whatever stops the build, `auto` goes on to the next backend
        _failed_builds.add(key)
        raise SandboxUnavailable(f"{missing}; building it offline failed: {e}") from e
    log.info("built sandbox image %s (%s) in %.1f s", built["image"], built["id"], time.monotonic() - started)
    return BACKENDS[name](cfg)


def probe_all(cfg: SandboxConfig) -> dict[str, str | None]:
    """Each backend -> None when usable here, else the reason it is not. Builds nothing: a docker engine that only
    lacks the image counts as usable, since choosing the backend builds it."""
    found: dict[str, str | None] = {}
    for name in ORDER:
        try:
            BACKENDS[name](cfg).close()
            found[name] = None
        except ImageMissing:
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
