"""Build the docker sandbox image offline: a minimal root filesystem made from this machine's Python, imported with
``docker import`` (no registry, no network).

The rootfs holds the interpreter, a trimmed standard library (no site-packages), the shared libraries it needs, the
non-root ``sandbox`` user and the harness package; every entry is root-owned and read-only to the sandbox user.
`sandbox/Dockerfile` is the equivalent for machines with a registry.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from selfloop.config import SandboxConfig
from selfloop.errors import SelfloopError
from selfloop.sandbox.engine import docker_client, engine_name
from selfloop.sandbox.runtime import Interpreter, harness_files, harness_sha256, interpreter

log = logging.getLogger(__name__)

SKIP_STDLIB = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "pydoc_data",
}
PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:10001:10001:sandbox:/scratch:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nsandbox:x:10001:\n"
LDD_PATH = re.compile(r"(/\S+)")


def shared_libraries(binaries: list[str]) -> set[str]:
    """Absolute paths of the libraries (and the loader) these ELF files load, per ldd."""
    found: set[str] = set()
    for chunk in range(0, len(binaries), 64):
        r = subprocess.run(["ldd", *binaries[chunk : chunk + 64]], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if "=>" in line:
                line = line.split("=>", 1)[1]
            m = LDD_PATH.search(line)
            if m and os.path.exists(m.group(1)):
                found.add(m.group(1))
    return found


class RootfsWriter:
    """Adds host paths to a tar under their real location, recreating symlinks on the way."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.seen: set[str] = set()
        self.names: set[str] = set()  # docker import rejects an archive with a path twice

    def _root_owned(self, info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.name in self.names:
            return None
        self.names.add(info.name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode &= 0o755 if info.isdir() else 0o755 if info.mode & 0o111 else 0o644
        return info

    def add_dir(self, path: str) -> None:
        path = os.path.realpath(path)
        if path == "/" or path in self.seen:
            return
        self.add_dir(os.path.dirname(path))
        self.seen.add(path)
        self.tar.add(path, recursive=False, filter=self._root_owned)

    def add_file(self, path: str) -> None:
        """A file reached through `path`; symlinks along the final component are kept."""
        real_parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        target = os.path.join(real_parent, os.path.basename(path))
        if target in self.seen:
            return
        self.add_dir(real_parent)
        self.seen.add(target)
        self.tar.add(target, recursive=False, filter=self._root_owned)
        if os.path.islink(target):
            self.add_file(os.path.join(real_parent, os.readlink(target)))

    def add_tree(self, root: str, skip: set[str]) -> None:
        root = os.path.realpath(root)
        # Only the parents: a filter that drops the root itself would drop the whole tree.
        self.add_dir(os.path.dirname(root))

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            parts = info.name.split("/")
            return (
                None
                if any(p in skip or p.startswith("config-3") for p in parts[len(root.split("/")) - 1 :])
                else self._root_owned(info)
            )

        self.tar.add(root, filter=keep)
        self.seen.add(root)

    def add_top_symlinks(self) -> None:
        """Mirror merged-/usr links (/bin -> usr/bin, /lib -> usr/lib, ...)."""
        for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
            if os.path.islink(top) and top not in self.seen:
                self.seen.add(top)
                self.tar.add(top, recursive=False, filter=self._root_owned)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        self._add_info(info, io.BytesIO(data))

    def add_empty_dir(self, name: str, mode: int) -> None:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
        self._add_info(info)

    def add_symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._add_info(info)

    def _add_info(self, info: tarfile.TarInfo, data: io.BytesIO | None = None) -> None:
        if info.name not in self.names:
            self.names.add(info.name)
            self.tar.addfile(info, data)


def write_rootfs(out: Path, python: Interpreter) -> None:
    """The interpreter, its standard library (minus tests, GUI and packaging modules, and
    minus site-packages), the shared libraries that ``ldd`` reports for the interpreter
    and its extension modules, an /etc/passwd with the non-root ``sandbox`` user (uid
    10001), empty /scratch and /tmp, and the harness package (/sandbox/harness/, its
    sources). Every entry is root-owned and read-only to the sandbox user.
    """
    stdlib = os.path.join(python.prefix, "lib", f"python{python.version}")
    if not os.path.isdir(stdlib):
        raise SelfloopError(f"cannot find the standard library of {python.path} at {stdlib}")
    dynload = os.path.join(stdlib, "lib-dynload")
    extensions = [os.path.join(dynload, f) for f in os.listdir(dynload)] if os.path.isdir(dynload) else []
    with tarfile.open(out, "w") as tar:
        w = RootfsWriter(tar)
        w.add_top_symlinks()
        w.add_file(python.path)
        for lib in sorted(shared_libraries([python.path, *extensions])):
            w.add_file(lib)
        w.add_tree(stdlib, SKIP_STDLIB)
        binary = os.path.basename(python.path)
        bindir = os.path.realpath(os.path.dirname(python.path))
        if binary != "python3":
            w.add_symlink(os.path.join(bindir, "python3"), binary)
        w.add_empty_dir("/etc", 0o755)
        w.add_bytes("/etc/passwd", PASSWD.encode())
        w.add_bytes("/etc/group", GROUP.encode())
        w.add_empty_dir("/sandbox", 0o755)
        w.add_empty_dir("/sandbox/harness", 0o755)
        for name, data in harness_files().items():
            w.add_bytes(f"/sandbox/harness/{name}", data)
        w.add_empty_dir("/scratch", 0o1777)
        w.add_empty_dir("/tmp", 0o1777)
        w.add_empty_dir("/proc", 0o555)
        w.add_empty_dir("/dev", 0o755)
        w.add_empty_dir("/sys", 0o555)


def image_changes(python: Interpreter) -> list[str]:
    bindir = os.path.realpath(os.path.dirname(python.path))
    return [
        f"ENV PATH=/usr/local/bin:{bindir}:/usr/bin:/bin",
        "ENV LANG=C.UTF-8",
        "USER 10001:10001",
        "WORKDIR /scratch",
        'ENTRYPOINT ["python3", "-I", "-S", "/sandbox/harness/__main__.py"]',
        'CMD ["--serve", "--scratch", "/scratch"]',
        f"LABEL selfloop.harness.sha256={harness_sha256()}",
    ]


def build_image(cfg: SandboxConfig) -> dict[str, str | int]:
    """Build and tag `cfg.image` with docker import; returns id, tag, size and python version."""
    import docker.errors

    python = interpreter(cfg.python)
    try:
        client = docker_client(cfg, timeout=300)  # the rootfs is uploaded: a remote engine builds it too
        client.ping()
    except Exception as e:
        raise SelfloopError(
            f"no Docker engine answers at {engine_name(cfg)} ({str(e)[:200]}); start dockerd or set sandbox.docker_host"
        ) from None
    repo, _, tag = cfg.image.rpartition(":") if ":" in cfg.image.rsplit("/", 1)[-1] else (cfg.image, "", "latest")
    with tempfile.TemporaryDirectory(prefix="selfloop-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        write_rootfs(rootfs, python)
        size = rootfs.stat().st_size
        log.info(
            "rootfs %.1f MiB from %s (Python %s); importing as %s", size / 2**20, python.path, python.version, cfg.image
        )
        try:
            client.api.import_image(src=str(rootfs), repository=repo, tag=tag, changes=image_changes(python))
            image = client.images.get(cfg.image)
        except docker.errors.APIError as e:
            raise SelfloopError(f"docker import failed: {e}") from None
        finally:
            client.close()
    return {
        "image": cfg.image,
        "id": image.short_id,
        "rootfs_bytes": size,
        "python": python.version,
        "harness_sha256": harness_sha256(),
    }
