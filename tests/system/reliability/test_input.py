"""Reliability: a hostile input corpus, generated here (never committed as binaries).

Every hostile entry under orig/ is recorded in the store (ingested, or quarantined
or dropped with a reason), nothing under orig/ changes, a second scan is quiet,
and the daemon stays up when the same files arrive while it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfloop.config import IngestConfig, ProjectPaths, WatchConfig
from selfloop.ingest import scan as ingest_mod
from selfloop.ingest.ingestor import Ingestor
from selfloop.ingest.scan import file_key
from selfloop.store import Store

PROSE = (
    "The harbour was quiet in the early morning, and the fishing boats rocked gently at their moorings. "
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread."
)
BAD_NAME = b"bad-\xff\xfe-name.txt"  # not UTF-8: reaches Python with lone surrogates


WORDS = (
    "river stone garden window winter letter market engine harbour signal forest teacher lantern valley copper "
    "ladder kitchen orchard meadow thunder compass bridge candle village journey silver shadow"
).split()


def prose(i: int) -> str:
    """A distinct sentence per seed (no two are near duplicates)."""
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + f", said number {i}."


def tree(root: Path) -> dict[str, str]:
    """Byte-level picture of a tree, special files and links included (nothing is followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{st.st_mode:o}:{st.st_mtime_ns}"
            else:
                out[str(p)] = f"special:{st.st_mode:o}:{st.st_mtime_ns}"
    return out


def hostile_corpus(orig: Path) -> dict[str, str | None]:
    """Write the hostile corpus; returns file key -> expected reason code (None: ingested with documents)."""
    o = orig
    expect: dict[str, str | None] = {}

    def put(name: str, data: bytes, code: str | None) -> None:
        (o / name).write_bytes(data)
        expect[f"orig/{name}"] = code

    put("ok.txt", PROSE.encode(), None)
    n = iter(range(10_000, 10_100))
    put("elf.txt", b"\x7fELF\x02\x01\x01\x00" + os.urandom(2048), "binary")
    put("random.md", bytes(range(1, 32)) * 64, "binary")
    put("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(256), "binary")
    put("latin1.txt", ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e " * 8).encode("latin-1"), "not_utf8")
    put("broken-utf8.py", b"print('ok')\n# \xe2\x82 truncated sequence\n", "not_utf8")
    put("utf16-lone-surrogate.txt", b"\xff\xfe" + b"\x00\xd8" + "after".encode("utf-16-le"), "bad_encoding")
    put("empty.txt", b"", "empty")
    put("blank.md", b"\n\n   \n\t\n", "empty")
    put("bom-only.txt", b"\xef\xbb\xbf", "empty")
    # Huge: a sparse file over max_file_mb (never read), and one JSONL record over max_chars.
    with open(o / "huge.txt", "wb") as f:
        f.truncate(3 * 2**20)
    expect["orig/huge.txt"] = "too_large"
    put("huge-record.jsonl", (json.dumps({"text": "word " * 150_000}) + "\n").encode(), "too_long")
    # Deep JSON: beyond the recursion limit, beyond max_json_depth, and a lone surrogate escape.
    put(
        "deep.jsonl",
        (
            "[" * 100_000
            + "]" * 100_000
            + "\n"
            + json.dumps(
                {
                    "text": PROSE,
                    "meta": {
                        "a": {
                            "b": {
                                "c": {
                                    "d": {
                                        "e": {
                                            "f": {
                                                "g": {
                                                    "h": {
                                                        "i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    },
                }
            )
            + "\n"
            + '{"text": "lone \\udc00 surrogate in an otherwise ordinary sentence of fair length"}\n'
        ).encode(),
        "too_deep",
    )
    # One bad line in a thousand.
    lines = [json.dumps({"text": prose(i)}) for i in range(1000)]
    lines[499] = '{"text": "an unterminated string'
    put("thousand.jsonl", ("\n".join(lines) + "\n").encode(), None)
    # Names: newline, tab, right-to-left override, astral plane, leading dash, and bytes that are not UTF-8.
    for name in [
        "new\nline.txt",
        "tab\tname.txt",
        "r\u202etl-\u05e9\u05dc\u05d5\u05dd.txt",
        "astral-\U0001d518\U0001f40d.md",
        "-dash.txt",
    ]:
        put(name, (prose(next(n)) + " " + prose(next(n))).encode(), None)
    with open(os.fsencode(o) + b"/" + BAD_NAME, "wb") as f:
        f.write((prose(next(n)) + " " + prose(next(n))).encode())
    expect[file_key("orig", os.fsdecode(BAD_NAME))] = None
    # Links: loops, a self loop, a directory loop, one leaving the corpus, a dangling one.
    os.symlink("loop-b.txt", o / "loop-a.txt")
    os.symlink("loop-a.txt", o / "loop-b.txt")
    os.symlink("self.txt", o / "self.txt")
    (o / "sub").mkdir()
    (o / "sub" / "inner.txt").write_text(prose(next(n)) + " " + prose(next(n)))
    os.symlink("..", o / "sub" / "up")
    os.symlink("/etc/hostname", o / "escape.txt")
    os.symlink("missing.txt", o / "dangling.txt")
    expect.update(
        {
            "orig/loop-a.txt": "symlink_loop",
            "orig/loop-b.txt": "symlink_loop",
            "orig/self.txt": "symlink_loop",
            "orig/sub/inner.txt": None,
            "orig/sub/up": "symlink_dir",
            "orig/escape.txt": "symlink_outside",
            "orig/dangling.txt": "broken_symlink",
        }
    )
    # Special files: a FIFO (opening it would block) and a listening unix socket.
    os.mkfifo(o / "pipe.txt")
    expect["orig/pipe.txt"] = "not_regular_file"
    return expect


def ingestor(paths: ProjectPaths, store: Store) -> Ingestor:
    return Ingestor(IngestConfig(max_file_mb=2.0), WatchConfig(), paths, store)


def files(store: Store) -> dict[str, tuple[str, str | None]]:
    return {r["path"]: (r["status"], r["reason"]) for r in store.query("SELECT path, status, reason FROM files")}


def test_hostile_corpus_is_recorded_with_reasons_and_orig_is_untouched(project):
    expect = hostile_corpus(project.orig)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(project.orig / "socket.txt"))
    sock.listen(1)
    expect["orig/socket.txt"] = "not_regular_file"
    before = tree(project.orig)
    try:
        with Store.open(project.db) as store:
            report = ingestor(project, store).scan()
            got = files(store)
            assert set(got) == set(expect), set(got) ^ set(expect)
            for key, code in expect.items():
                status, reason = got[key]
                if code is None:
                    assert status == "ingested" and reason is None, (key, reason)
                    assert (
                        store.scalar("SELECT COUNT(*) FROM documents WHERE file_path = ? AND status = 'active'", (key,))
                        >= 1
                    ), key
                elif store.scalar("SELECT COUNT(*) FROM documents WHERE file_path = ?", (key,)):
                    # a readable file whose records were refused one by one: each with its reason
                    codes = {
                        r[0].split(":")[0]
                        for r in store.query("SELECT reason FROM documents WHERE file_path = ?", (key,))
                    }
                    assert status == "ingested" and code in codes, (key, codes)
                else:
                    assert status == "quarantined" and reason.startswith(code + ":"), (key, reason)
            assert len(report.quarantined) == sum(1 for s, _ in got.values() if s == "quarantined")
            # Record-level failures name their line.
            bad = store.query(
                "SELECT locator, reason FROM documents WHERE file_path = 'orig/thousand.jsonl' AND status = 'dropped'"
            )
            assert [(r["locator"], r["reason"].split(":")[0]) for r in bad] == [("line 500", "invalid_json")]
            assert (
                store.scalar(
                    "SELECT COUNT(*) FROM documents WHERE file_path = 'orig/thousand.jsonl' AND status = 'active'"
                )
                == 999
            )
            deep = {
                r["locator"]: r["reason"]
                for r in store.query("SELECT locator, reason FROM documents WHERE file_path = 'orig/deep.jsonl'")
            }
            assert deep["line 1"].startswith("too_deep") and deep["line 2"].startswith("too_deep: nesting depth 18")
            assert deep["line 3"].startswith("invalid_unicode: a string holds the lone surrogate '\\udc00'")
            # The huge file was refused unread; the name that is not UTF-8 keeps its bytes as escapes.
            assert store.scalar("SELECT sha256 FROM files WHERE path = 'orig/huge.txt'") is None
            assert "orig/bad-\\xff\\xfe-name.txt" in got
            # A second scan (a restart) changes nothing and reports everything unchanged.
            again = ingestor(project, store).scan()
            assert (again.ingested, again.removed, len(again.quarantined)) == (0, 0, 0)
            assert files(store) == got
            assert store.integrity_ok()
    finally:
        sock.close()
    assert tree(project.orig) == before


def test_a_file_deleted_or_changed_between_probe_and_read_is_recorded(project, monkeypatch):
    (project.orig / "vanish.txt").write_text(PROSE)
    (project.orig / "shrink.jsonl").write_text("".join(json.dumps({"text": prose(i)}) + "\n" for i in range(20)))
    (project.orig / "grow.txt").write_text(PROSE)
    real = ingest_mod.read_bytes

    def racing_read(path: Path, limit: int):
        # What another process does to the file after the ingestor looked at it, before it reads it.
        if path.name == "vanish.txt":
            path.unlink()
        elif path.name == "shrink.jsonl":
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2 + 7)  # cut in the middle of a line
        elif path.name == "grow.txt":
            with open(path, "ab") as f:
                f.write(b"x" * (3 * 2**20))
        return real(path, limit)

    monkeypatch.setattr(ingest_mod, "read_bytes", racing_read)
    with Store.open(project.db) as store:
        ingestor(project, store).scan()
        got = files(store)
        assert got["orig/vanish.txt"][0] == "quarantined" and got["orig/vanish.txt"][1].startswith(
            "unreadable: No such file"
        )
        assert got["orig/grow.txt"][0] == "quarantined" and got["orig/grow.txt"][1].startswith("too_large: grew past")
        assert got["orig/shrink.jsonl"][0] == "ingested"
        torn = store.query("SELECT reason FROM documents WHERE file_path = 'orig/shrink.jsonl' AND status = 'dropped'")
        assert [r[0].split(":")[0] for r in torn] == ["invalid_json"]  # the cut line, alone
        kept = store.scalar(
            "SELECT COUNT(*) FROM documents WHERE file_path = 'orig/shrink.jsonl' AND status = 'active'"
        )

        monkeypatch.setattr(ingest_mod, "read_bytes", real)
        report = ingestor(project, store).scan()  # the next look (a restart, or the watcher) settles each one
        got = files(store)
        assert got["orig/vanish.txt"] == ("removed", "deleted")
        assert got["orig/grow.txt"][0] == "quarantined" and got["orig/grow.txt"][1].startswith("too_large: 3.0 MiB")
        # What was stored is what was read (the cut file): its hash matches, so it is not ingested twice,
        # and the size recorded before the cut is corrected.
        assert report.ingested == 0 and report.unchanged == 1 and got["orig/shrink.jsonl"][0] == "ingested"
        size = store.scalar("SELECT size FROM files WHERE path = 'orig/shrink.jsonl'")
        assert size == (project.orig / "shrink.jsonl").stat().st_size
        now = store.scalar("SELECT COUNT(*) FROM documents WHERE file_path = 'orig/shrink.jsonl' AND status = 'active'")
        assert now == kept and store.integrity_ok()


UNREADABLE_SCRIPT = """
import json, logging, sys
from pathlib import Path
from selfloop.config import IngestConfig, ProjectPaths, WatchConfig
from selfloop.ingest.ingestor import Ingestor
from selfloop.store import Store
logging.basicConfig(level=logging.WARNING)
root = Path(sys.argv[1])
paths = ProjectPaths(root=root, orig=root / "orig", rework=root / "rework", state=root / "state")
with Store.open(paths.db) as store:
    Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
    print(json.dumps({r["path"]: [r["status"], r["reason"]] for r in store.query("SELECT * FROM files")}))
"""


def test_unreadable_files_are_quarantined(tmp_path):
    # Root reads everything; the ingest runs without the capabilities that let root
    # ignore file permissions (as an unprivileged daemon would), over root-owned files it may not read.
    argv = [sys.executable, "-c", UNREADABLE_SCRIPT, str(tmp_path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("setpriv (util-linux) is needed to drop root's file-permission override")
            pytest.skip("running as root without setpriv: root reads every file")
        caps = "-dac_override,-dac_read_search"
        argv = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *argv]
    orig = tmp_path / "orig"
    orig.mkdir()
    (orig / "ok.txt").write_text(PROSE)
    (orig / "secret.txt").write_text(PROSE + " Secret.")
    (orig / "locked").mkdir()
    (orig / "locked" / "inside.txt").write_text(PROSE + " Locked away.")
    (tmp_path / "rework").mkdir()
    os.chmod(orig / "secret.txt", 0o000)
    os.chmod(orig / "locked", 0o000)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    finally:
        os.chmod(orig / "secret.txt", 0o644)
        os.chmod(orig / "locked", 0o755)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["orig/ok.txt"] == ["ingested", None]
    assert got["orig/secret.txt"][0] == "quarantined" and got["orig/secret.txt"][1].startswith(
        "unreadable: Permission denied"
    )
    # A directory that cannot be listed is logged (its files are unknown, so there is no row to write).
    assert "cannot list" in proc.stderr and "locked" in proc.stderr
    assert not any(k.startswith("orig/locked/") for k in got)


# --------------------------------------------------------------------------- the daemon


@pytest.mark.slow
def test_daemon_stays_up_while_hostile_files_arrive(tmp_path):
    from lifecycle_helpers import make_project

    config_path, _, paths = make_project(
        tmp_path / "proj",
        {
            "ingest": {"max_file_mb": 2.0},
            "watch": {"settle_s": 0.3, "debounce_s": 0.1},
            "schedule": {"interval_minutes": 60, "min_gap_s": 3600, "stop_timeout_s": 30},
        },
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    expect = hostile_corpus(staging)
    # Half of it is there at startup (the scan), the rest arrives while the daemon runs (the watcher).
    names = sorted(os.listdir(staging))
    first = [n for n in names if n < "h"]
    for n in first:
        os.rename(staging / n, paths.orig / n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFLOOP_")}
    log = open(tmp_path / "daemon.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfloop", "run", "--headless", "-c", str(config_path)],
        cwd=config_path.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def recorded() -> set[str]:
            try:
                with Store.open(paths.db, readonly=True) as s:
                    return {r[0] for r in s.query("SELECT path FROM files")}
            except Exception:
                return set()

        deadline = time.time() + 120
        while time.time() < deadline and not {file_key("orig", n) for n in first if n != "sub"} <= recorded():
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        for n in sorted(os.listdir(staging)):
            os.rename(staging / n, paths.orig / n)
        before = tree(paths.orig)
        deadline = time.time() + 120
        while time.time() < deadline and not set(expect) <= recorded():
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        assert set(expect) <= recorded(), set(expect) - recorded()
        time.sleep(1.0)
        assert proc.poll() is None  # still up after every one of them
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert tree(paths.orig) == before
    with Store.open(paths.db, readonly=True) as s:
        got = {r["path"]: (r["status"], r["reason"]) for r in s.query("SELECT * FROM files")}
        assert got["orig/pipe.txt"][1].startswith("not_regular_file") and got["orig/loop-a.txt"][1].startswith(
            "symlink_loop"
        )
        assert got["orig/bad-\\xff\\xfe-name.txt"][0] == "ingested" and got["orig/huge.txt"][1].startswith("too_large")
        assert s.integrity_ok()
    exported = [json.loads(line) for line in (paths.state / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(e["kind"] == "quarantined" for e in exported) and exported[-1]["kind"] == "daemon_stopped"
