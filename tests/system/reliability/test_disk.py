"""Reliability: a full disk while writing rework and while the training child saves a
checkpoint. Real size-limited filesystems (tmpfs), so the errors are the kernel's own.

The champion stays whole and current, the error names the cause, the daemon keeps
running, and once there is room again the next cycle succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lifecycle_helpers import chat_record, make_project, paragraph

from selfloop.rework.writer import write_records
from selfloop.store import Store

IN_CI = os.environ.get("CI", "").lower() == "true"


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the duration (root only)."""
    why = None
    if os.geteuid() != 0:
        why = "mounting a size-limited tmpfs needs root"
    else:
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], capture_output=True, text=True
        )
        if r.returncode:
            why = f"cannot mount a tmpfs here: {r.stderr.strip()}"
    if why:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a ballast file until the filesystem is full; returns it."""
    ballast = path / "ballast.bin"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return ballast


def record(i: int) -> dict:
    return {
        "id": f"c00001-{i}",
        "text": paragraph(i),
        "kind": "text",
        "label_source": "self",
        "strategy": "rewrite",
        "generation": 0,
        "cycle": 1,
        "sources": [i],
        "verdicts": [],
        "created_at": 0.0,
    }


def test_rework_write_on_a_full_disk_fails_whole_and_leaves_nothing(tmp_path):
    with small_filesystem(tmp_path / "rework", "256k") as rework:
        done = rework / "gen-0000" / "rewrite-c00001.jsonl"
        assert write_records(done, [record(i) for i in range(5)], kind="text")
        before = done.read_bytes()
        fill(rework)
        target = rework / "gen-0000" / "synthesize-c00002.jsonl"
        with pytest.raises(OSError) as err:
            write_records(target, [record(i) for i in range(100, 400)], kind="text")
        assert err.value.errno == errno.ENOSPC
        # Nothing half written: no target, no temp file, the earlier file untouched.
        assert not target.exists()
        assert sorted(p.name for p in (rework / "gen-0000").iterdir()) == ["rewrite-c00001.jsonl"]
        assert done.read_bytes() == before
        (rework / "ballast.bin").unlink()
        assert write_records(target, [record(i) for i in range(100, 400)], kind="text")  # room again: it works
        assert len(target.read_text().splitlines()) == 300


def _loads(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    with torch.no_grad():
        assert torch.isfinite(model(tok("The cat sees the river.", return_tensors="pt")["input_ids"]).logits).all()


@pytest.mark.slow
def test_disk_full_while_saving_a_checkpoint_keeps_the_champion_and_the_daemon(tmp_path):
    config_path, _, paths = make_project(
        tmp_path / "proj",
        {
            "train": {"gen0_steps": 8, "max_steps": 60, "save_steps": 4, "log_steps": 2},
            "schedule": {"interval_minutes": 0.05, "min_gap_s": 0, "stop_timeout_s": 30},
            "tasks": {"enabled": False},
        },
    )
    (paths.orig / "prose.txt").write_text("\n\n".join(paragraph(i, 8) for i in range(30)) + "\n")
    (paths.orig / "chat.jsonl").write_text("".join(json.dumps(chat_record(i)) + "\n" for i in range(20)))
    with small_filesystem(paths.runs, "24m") as runs:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
        log = open(tmp_path / "daemon.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfloop", "run", "--headless", "-c", str(config_path)],
            cwd=config_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

        def wait_for(sql: str, params: tuple = (), timeout: float = 240) -> None:
            deadline = time.time() + timeout
            while time.time() < deadline:
                assert proc.poll() is None, (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
                try:
                    with Store.open(paths.db, readonly=True) as s:
                        if s.scalar(sql, params):
                            return
                except Exception:
                    pass
                time.sleep(0.2)
            raise AssertionError(f"timed out: {sql}\n" + (tmp_path / "daemon.log").read_text(errors="replace")[-3000:])

        try:
            wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'done' AND generation = 0")
            champion = (paths.models / "current").read_text()
            # Generation 1 trains; once its first checkpoint is on disk, the disk fills up.
            wait_for("SELECT COUNT(*) FROM train_metrics WHERE generation = 1 AND step >= 6")
            ballast = fill(runs)
            wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'failed' AND generation = 1")
            with Store.open(paths.db, readonly=True) as s:
                error = s.scalar("SELECT error FROM cycles WHERE status = 'failed' ORDER BY id LIMIT 1")
            assert "No space left on device" in error or "disk" in error.lower(), error
            # The daemon is up; later cycles keep failing cleanly while the disk stays full.
            time.sleep(4)
            assert proc.poll() is None
            assert (paths.models / "current").read_text() == champion
            _loads(paths.models / champion.strip())
            # Room again: the daemon retries on its own and a cycle completes.
            ballast.unlink()
            with Store.open(paths.db, readonly=True) as s:
                last_failed = s.scalar("SELECT MAX(id) FROM cycles WHERE status = 'failed'")
            wait_for("SELECT COUNT(*) FROM cycles WHERE status = 'done' AND id > ?", (last_failed,), timeout=300)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                import psutil

                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
                proc.wait()
            log.close()
    with Store.open(paths.db, readonly=True) as s:
        assert s.integrity_ok()
        events = [r[0] for r in s.query("SELECT kind FROM events")]
        assert "cycle_failed" in events and events.count("daemon_started") == 1
    _loads(paths.models / (paths.models / "current").read_text().strip())


def test_a_write_error_of_torch_on_a_full_disk_is_named_for_what_it_is(tmp_path, monkeypatch):
    # torch's checkpoint writer fails on a full disk with a C++ stream error and no errno.
    import shutil

    from selfloop.train import run

    stream_error = RuntimeError("basic_ios::clear: iostream error")
    assert run.disk_full(tmp_path, stream_error) is None  # room enough: not the disk
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run.shutil, "disk_usage", lambda path: usage._replace(free=4096))
    reason = run.disk_full(tmp_path, stream_error)
    assert reason.startswith("No space left on device: 0.0 MiB free") and "iostream error" in reason
    assert run.disk_full(tmp_path, RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # not a write


def test_the_child_reports_a_full_disk_under_safetensors_as_its_failure_line(tmp_path, monkeypatch, capsys):
    # safetensors fails on a full disk with its own error type, not an OSError (a CI run met it mid-checkpoint).
    import shutil

    from safetensors import SafetensorError

    from selfloop.train import run
    from selfloop.train.launch import failure_reason
    from selfloop.train.rundir import FAILURE_PREFIX

    def save(args):
        run._log("examples by kind: text 3 from 1 documents")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(run, "train", save)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run.shutil, "disk_usage", lambda path: usage._replace(free=4096))
    assert run.main(["--out", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.err.startswith(FAILURE_PREFIX)
    log = tmp_path / "train.log"
    log.write_text(out.err + out.out)  # the informational line lands after the failure line
    reason = failure_reason(log)
    assert reason.startswith("No space left on device: 0.0 MiB free") and "SafetensorError" in reason
    monkeypatch.setattr(run.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(SafetensorError):  # room enough: not the disk, the traceback stays
        run.main(["--out", str(tmp_path)])
