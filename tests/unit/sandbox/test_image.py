"""The docker sandbox image: built offline, on first use, when the chosen backend's engine lacks it (or holds one
for an older harness). Runs against the real engine, under a test-only tag, so the shared image is left alone."""

from __future__ import annotations

import io
import logging
import secrets
import tarfile

import pytest
from sandbox_helpers import IN_CI, config

from selfloop.sandbox import Job, Sandbox, SandboxUnavailable
from selfloop.sandbox.backends import choose, make_backend
from selfloop.sandbox.backends.docker import HARNESS_LABEL
from selfloop.sandbox.engine import docker_client
from selfloop.sandbox.runtime import harness_sha256

pytestmark = pytest.mark.docker


@pytest.fixture
def engine():
    """A client of the reachable engine, and a tag that no other test uses (removed afterwards)."""
    client = docker_client(config(), timeout=10)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001 - whatever keeps the engine from answering
        client.close()
        if IN_CI:
            pytest.fail(f"Docker engine unavailable in CI: {e}")
        pytest.skip(f"no Docker engine answers here: {e}")
    tag = f"selfloop-sandbox-test:{secrets.token_hex(4)}"
    yield client, tag
    if client.images.list(name=tag):
        client.images.remove(tag, force=True)
    client.close()


def test_a_missing_then_a_stale_image_is_built_offline_when_the_backend_is_chosen(engine, caplog):
    client, tag = engine
    cfg = config(backend="auto", image=tag)
    assert not client.images.list(name=tag)
    with caplog.at_level(logging.INFO, logger="selfloop.sandbox.backends"):
        backend = choose(cfg)
    assert backend.name == "docker"  # not skipped for bwrap
    assert f"sandbox image {tag} not found: building it offline now" in caplog.text
    assert f"built sandbox image {tag}" in caplog.text
    image = client.images.get(tag)
    assert image.labels[HARNESS_LABEL] == harness_sha256()
    with Sandbox(cfg, backend) as sb:
        assert sb.run(Job(files={"main.py": "print(6 * 7)"}, entry="main.py", expected="42")).passed

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="selfloop.sandbox.backends"):
        choose(cfg).close()
    assert "building" not in caplog.text and client.images.get(tag).id == image.id  # found: built once

    # An image left by an older selfloop (another harness) under the tag is replaced the same way.
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(
        rootfs.getvalue(), repository=repo, tag=version, changes=[f"LABEL {HARNESS_LABEL}=older"]
    )
    with caplog.at_level(logging.INFO, logger="selfloop.sandbox.backends"):
        make_backend("docker", cfg.model_copy(update={"backend": "docker"})).close()
    assert f"sandbox image {tag} holds an older harness: building it offline now" in caplog.text
    assert client.images.get(tag).labels[HARNESS_LABEL] == harness_sha256()


def test_a_failed_build_is_not_tried_again(engine, caplog):
    _, tag = engine
    cfg = config(backend="docker", image=tag, python="/nonexistent/python3")  # the build cannot find a Python
    with caplog.at_level(logging.INFO, logger="selfloop.sandbox.backends"):
        with pytest.raises(SandboxUnavailable, match="building it offline failed: no usable Python"):
            make_backend("docker", cfg)
        with pytest.raises(SandboxUnavailable, match="building it here failed"):
            make_backend("docker", cfg)
    assert caplog.text.count("building it offline now") == 1
