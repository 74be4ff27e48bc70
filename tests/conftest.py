"""Shared fixtures: temp projects, a subprocess runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfloop.config import ProjectPaths
from selfloop.testing import make_project, tiny_config


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `python -m selfloop ARGS` as a real subprocess and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "selfloop", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def project(tmp_path: Path) -> ProjectPaths:
    """Empty corpus roots (orig/, rework/) and a state dir path in a temp project with the tiny config."""
    return make_project(tmp_path, tiny_config())[2]


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(autouse=True)
def _no_selfloop_env(monkeypatch):
    """Tests never inherit SELFLOOP_* overrides from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("SELFLOOP_"):
            monkeypatch.delenv(key)
