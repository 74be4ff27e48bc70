"""The Docker engine the docker sandbox talks to: a client for it and its name for messages.

Shared by the docker backend (jobs, the leftover sweep) and the offline image build; starts nothing.
"""

from __future__ import annotations

import os

from selfloop.config import SandboxConfig


def engine_name(cfg: SandboxConfig) -> str:
    """The engine the sandbox talks to, for messages."""
    return cfg.docker_host or os.environ.get("DOCKER_HOST") or "the local socket"


def docker_client(cfg: SandboxConfig, timeout: int = 60):
    """A Docker SDK client for ``cfg.docker_host``, else DOCKER_HOST, else the local socket.

    Always through ``docker.from_env`` so the TLS settings of the environment
    (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH: a remote engine on tcp://) apply to a
    configured host as well. Used for jobs, the leftover sweep and image builds alike.
    """
    import docker

    env = dict(os.environ)
    if cfg.docker_host:
        env["DOCKER_HOST"] = cfg.docker_host
    return docker.from_env(timeout=timeout, environment=env)
