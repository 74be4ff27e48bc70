"""The docker sandbox on another engine: a second dockerd on a unix socket of its own, started here.

Everything the sandbox does with docker (build the image, run jobs, sweep
leftovers) must reach the engine named by ``sandbox.docker_host`` or DOCKER_HOST,
with the same limits, and nothing may land on the default engine. The second
engine listens only on a socket file in a private temp dir (no TCP, no
non-loopback address), keeps its state there and has no bridge network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest
from sandbox_helpers import IN_CI, config

from selfloop.sandbox import Job, Sandbox
from selfloop.sandbox.backends import make_backend
from selfloop.sandbox.backends.docker import LABEL, OWNER_LABEL, owner_tag
from selfloop.sandbox.engine import docker_client
from selfloop.sandbox.image import build_image
from selfloop.sandbox.worker import SandboxUnavailable

pytestmark = pytest.mark.docker


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"second Docker engine unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine():
    """``(docker_host, data_root)`` of a dockerd this fixture starts and stops."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        unavailable("needs root and dockerd to start a second engine")
    root = Path(tempfile.mkdtemp(prefix="sl-engine-", dir="/tmp"))  # short: a socket path has ~100 bytes
    host = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            dockerd,
            f"--host={host}",
            f"--data-root={root}/data",
            f"--exec-root={root}/exec",
            f"--pidfile={root}/docker.pid",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)  # dockerd stops its containers and its containerd
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # dockerd bind-mounts its data root onto itself; a killed one leaves that mount behind.
        if f" {root}/data " in Path("/proc/mounts").read_text():
            subprocess.run(["umount", "--lazy", f"{root}/data"], check=False)
        shutil.rmtree(root, ignore_errors=True)

    deadline = time.monotonic() + 60
    while True:
        try:
            with closing(docker_client(config(docker_host=host), timeout=5)) as client:
                client.ping()
            break
        except Exception as e:  # noqa: BLE001 - still starting
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-500:]
                stop()
                unavailable(f"second dockerd did not start ({e}): {tail}")
            time.sleep(0.2)
    yield host, f"{root}/data"
    stop()


def ours(client) -> list:
    return client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner_tag()}"})


def test_image_build_and_jobs_go_to_the_configured_engine_with_the_same_limits(engine):
    host, data_root = engine
    cfg = config(backend="docker", docker_host=host, timeout_s=5, pool_size=1)
    built = build_image(cfg)
    with closing(docker_client(cfg)) as remote:
        assert remote.info()["DockerRootDir"] == data_root
        assert remote.images.get(cfg.image).short_id == built["id"]
    with Sandbox(cfg, make_backend("docker", cfg)) as sb:
        v = sb.run(Job(files={"main.py": "print(6 * 7)\n"}, entry="main.py", expected="42"))
        assert v.passed and v.backend == "docker", v
        # The warm worker lives on the configured engine, limited as on the local one; none is on the default engine.
        with closing(docker_client(cfg)) as remote, closing(docker_client(config())) as local:
            (worker,) = ours(remote)
            hc = worker.attrs["HostConfig"]
            assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"]
            assert hc["PidsLimit"] == cfg.pids and hc["Memory"] == hc["MemorySwap"] > cfg.memory_mb * 2**20
            assert hc["NanoCpus"] == int(cfg.cpus * 1e9) and "no-new-privileges" in hc["SecurityOpt"]
            assert worker.attrs["Config"]["User"] == "10001:10001"
            assert ours(local) == []
        net = sb.run(
            Job(
                files={
                    "main.py": (
                        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=0.5)\n"
                        "    print('leak')\n"
                        "except OSError:\n    print('isolated')\n"
                    )
                },
                entry="main.py",
                expected="isolated",
            )
        )
        assert net.passed, net
        memory = sb.run(
            Job(files={"main.py": "x = []\nwhile True:\n    x.append(bytearray(10**7))\n"}, entry="main.py")
        )
        assert memory.status == "memory", memory
    with closing(docker_client(cfg)) as remote:
        assert ours(remote) == []


def test_docker_host_from_the_environment_is_honoured(engine, monkeypatch):
    host, data_root = engine
    monkeypatch.setenv("DOCKER_HOST", host)
    with closing(docker_client(config())) as client:
        assert client.info()["DockerRootDir"] == data_root


def test_leftovers_of_dead_owners_are_swept_on_the_configured_engine(engine):
    host, _ = engine
    cfg = config(backend="docker", docker_host=host)
    build_image(cfg)
    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = owner_tag().rpartition(":")[0] + f":{dead.pid}"
    with closing(docker_client(cfg)) as remote:
        leftover = remote.containers.create(cfg.image, labels={LABEL: "1", OWNER_LABEL: tag})
        make_backend("docker", cfg).close()  # starting the backend sweeps
        assert leftover.id not in [c.id for c in remote.containers.list(all=True)]


def test_an_unreachable_engine_is_named_in_the_error(tmp_path):
    cfg = config(backend="docker", docker_host=f"unix://{tmp_path}/none.sock")
    with pytest.raises(SandboxUnavailable, match="none.sock"):
        make_backend("docker", cfg)
