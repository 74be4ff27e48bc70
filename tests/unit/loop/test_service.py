"""deploy/: the daemon's systemd unit, read as systemd reads it, and its logrotate config."""

from __future__ import annotations

import configparser
import grp
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from selfloop.errors import AlreadyRunning, ConfigError
from selfloop.testing import make_project

UNIT = Path(__file__).resolve().parents[3] / "deploy" / "selfloop.service"


def service() -> dict[str, str]:
    unit = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT)
    return dict(unit["Service"])


def test_unit_waits_for_readiness_pings_a_watchdog_and_does_not_restart_what_a_restart_cannot_fix():
    s = service()
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure"
    prevent = {int(code) for code in s["RestartPreventExitStatus"].split()}
    assert {AlreadyRunning.exit_code, ConfigError.exit_code} <= prevent and 1 not in prevent


def test_unit_hardening_leaves_bubblewrap_its_namespaces_mounts_and_fresh_proc():
    s = service()
    assert s["NoNewPrivileges"] == "yes" and s["CapabilityBoundingSet"] == "" and s["ProtectSystem"] == "strict"
    assert set(s["RestrictNamespaces"].split()) >= {"user", "pid", "net", "ipc", "uts", "cgroup", "mnt"}
    assert "@mount" in s["SystemCallFilter"].split()
    assert "AF_UNIX" in s["RestrictAddressFamilies"].split()  # the docker engine's socket
    # Each of these mounts over part of /proc; the kernel then refuses bubblewrap's own /proc.
    over_proc = {"ProtectKernelTunables", "ProtectKernelLogs", "ProtectHostname", "ProtectProc", "ProcSubset"}
    assert not over_proc & {k for k, v in s.items() if v not in ("", "no", "false", "default", "all")}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_exposure_score_is_ok():
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    assert float(m.group(1)) <= 4.0  # systemd's "OK" band starts below 5.0; 9.2 UNSAFE before the hardening


def test_shipped_logrotate_config_rotates_both_files_the_daemon_writes(tmp_path):
    """deploy/selfloop.logrotate names the daemon's two files (for the unit's /srv/selfloop) and, where logrotate
    is installed, rotates both by move-and-create, which the daemon follows by itself (see test_daemon)."""
    shipped = UNIT.with_suffix(".logrotate").read_text()
    _, _, paths = make_project(tmp_path / "srv", {})
    files = [paths.logs / "selfloop.jsonl", paths.state / "events.jsonl"]  # where Daemon writes them
    for f in files:
        assert str(f).replace(str(paths.root), "/srv/selfloop") in shipped
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed here")
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        shipped.replace("/srv/selfloop", str(paths.root)).replace("su selfloop selfloop", f"su {user} {group}")
    )
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text('{"line": 1}\n')
    r = subprocess.run(
        ["logrotate", "--force", "--state", str(tmp_path / "state"), str(conf)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    for f in files:
        assert not f.exists() and f.with_name(f.name + ".1").read_text() == '{"line": 1}\n'
