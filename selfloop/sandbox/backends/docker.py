"""The docker backend: one container per worker, through the Docker SDK.

Containers have no network, a read-only root, no capabilities and a non-root user (``container_options``); the
docker socket is never mounted. Jobs go in on the container's stdin and answers come back on its stdout; the wall
deadline is enforced here, then the container is removed. Containers whose owner process on this host is gone are
swept at start.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from selfloop.config import SandboxConfig
from selfloop.sandbox.backends.base import Backend, harness_args
from selfloop.sandbox.engine import docker_client, engine_name
from selfloop.sandbox.job import Limits
from selfloop.sandbox.runtime import harness_sha256
from selfloop.sandbox.worker import SandboxUnavailable, Worker

log = logging.getLogger(__name__)

LABEL = "selfloop.sandbox"
OWNER_LABEL = "selfloop.owner"
HARNESS_LABEL = "selfloop.harness.sha256"
# Room for the harness and tester processes on top of the job's own memory and its tmpfs.
OVERHEAD_MB = 128


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(tag: str) -> bool:
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's container: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def container_options(cfg: SandboxConfig) -> dict[str, Any]:
    """Everything docker is told about a sandbox container (pure, so it is testable).

    The image built by `selfloop sandbox build` (or sandbox/Dockerfile) with no network, a
    read-only root, a sized tmpfs scratch, memory == memory+swap, a pids limit, a CPU
    quota, no capabilities, no-new-privileges, a non-root user and an init.
    """
    mem = f"{cfg.memory_mb + cfg.file_mb + 16 + OVERHEAD_MB}m"
    return {
        "command": harness_args(True, True, "/scratch"),
        "stdin_open": True,
        "detach": True,
        "network_disabled": True,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {
            "/scratch": f"rw,nosuid,nodev,size={cfg.file_mb}m,mode=1777",
            "/tmp": "rw,nosuid,nodev,size=16m,mode=1777",
        },
        "mem_limit": mem,
        "memswap_limit": mem,
        "pids_limit": cfg.pids,
        "nano_cpus": int(cfg.cpus * 1e9),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "user": "10001:10001",
        "init": True,
        "working_dir": "/scratch",
        "environment": {},
        "labels": {LABEL: "1", OWNER_LABEL: owner_tag()},
    }


class ImageMissing(SandboxUnavailable):
    """The engine answers but lacks the image `selfloop sandbox build` makes: none under the tag, or one built for
    another harness. ``make_backend`` builds it offline and tries again."""


class DockerWorker(Worker):
    backend = "docker"

    def __init__(self, client, cfg: SandboxConfig, limits: Limits, serve: bool):
        super().__init__(limits)
        opts = container_options(cfg)
        if not serve:
            opts["command"] = [a for a in opts["command"] if a != "--serve"]
        self.container = client.containers.create(cfg.image, **opts)
        try:
            self.sock = self.container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.raw = getattr(self.sock, "_sock", self.sock)
            self.container.start()
        except Exception:
            self.container.remove(force=True)
            raise
        self.start_reader(self._chunks())
        self._oom = False

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        from docker.utils.socket import frames_iter

        for stream, data in frames_iter(self.sock, tty=False):
            yield stream, data

    def send(self, data: bytes) -> None:
        self.raw.sendall(data)

    def killed_by_memory_limit(self) -> bool:
        if not self._closed:
            try:
                self.container.reload()
                self._oom = bool(self.container.attrs.get("State", {}).get("OOMKilled"))
            except Exception as e:  # the engine may already have removed it
                log.debug("cannot inspect container: %s", e)
        return self._oom

    def kill(self) -> None:
        if self._closed:
            return
        self.killed_by_memory_limit()
        self._closed = True
        import docker.errors

        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            log.warning("could not remove sandbox container %s: %s", self.container.short_id, e)
        try:
            self.sock.close()
        except OSError:
            pass


class DockerBackend(Backend):
    """The client talks to the engine named by ``docker_host`` (else DOCKER_HOST / the local
    socket), so a remote engine works with the same container options. Every container is
    labelled ``selfloop.sandbox=1`` plus its owner (host and pid); at start, containers
    whose owner process on this host is gone are swept.
    """

    name = "docker"
    pidns = True
    isolation = "container: no network, read-only root, memory/pids/cpu limits, no capabilities, non-root"

    def __init__(self, cfg: SandboxConfig):
        super().__init__(cfg)
        try:
            import docker
            import docker.errors
        except ImportError as e:  # pragma: no cover - docker is a dependency
            raise SandboxUnavailable(f"the docker SDK is not installed: {e}") from None
        try:
            self.client = docker_client(cfg)
            self.client.ping()
        except Exception as e:
            raise SandboxUnavailable(f"no Docker engine answers at {engine_name(cfg)}: {str(e)[:200]}") from None
        try:
            image = self.client.images.get(cfg.image)
        except docker.errors.ImageNotFound:
            self.client.close()
            raise ImageMissing(f"image {cfg.image} not found") from None
        except docker.errors.APIError as e:
            self.client.close()
            raise SandboxUnavailable(f"cannot inspect image {cfg.image}: {e}") from None
        # Images from `selfloop sandbox build` name their harness; others are checked at handshake.
        built_for = (image.labels or {}).get(HARNESS_LABEL)
        if built_for and built_for != harness_sha256():
            self.client.close()
            raise ImageMissing(f"image {cfg.image} holds an older harness")
        self.sweep()

    def sweep(self) -> int:
        """Remove sandbox containers left behind by dead selfloop processes on this host."""
        removed = 0
        for c in self.client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
            if owner_gone(c.labels.get(OWNER_LABEL, "")):
                try:
                    c.remove(force=True)
                    removed += 1
                except Exception as e:
                    log.warning("could not sweep leftover sandbox container %s: %s", c.short_id, e)
        if removed:
            log.info("swept %d leftover sandbox container(s)", removed)
        return removed

    def start_worker(self, serve: bool) -> Worker:
        import docker.errors

        try:
            return DockerWorker(self.client, self.cfg, self.limits(), serve)
        except docker.errors.DockerException as e:
            raise SandboxUnavailable(f"cannot start a sandbox container: {str(e)[:300]}") from None

    def close(self) -> None:
        self.client.close()
