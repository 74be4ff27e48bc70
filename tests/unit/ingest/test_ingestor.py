"""Ingestor end to end on real files in tmp_path and a real SQLite store."""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from selfloop.cli.project import starter_corpus
from selfloop.config import IngestConfig, ProjectPaths, WatchConfig
from selfloop.corpus.dedup import HASH_SCHEME, signature, to_bytes
from selfloop.ingest.ingestor import Ingestor
from selfloop.store import Store
from selfloop.store import corpus as queries

LONG = (
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings. "
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread. "
    "Children walked to school along the sea wall, counting the ships that waited outside the breakwater. "
    "By noon the tide had turned, the nets were mended, and the old lighthouse keeper told stories of storms "
    "that had flattened the dunes long before anyone in the village could remember. Visitors from the city "
    "bought smoked fish, postcards and woollen hats, then hurried back to the station before the last train."
)
OTHER = (
    "Mountain trails climb through pine forests toward a ridge where snow lingers until early summer. "
    "Hikers carry maps, water and warm jackets because the weather changes quickly above the tree line."
)


@pytest.fixture
def store(project: ProjectPaths):
    with Store.open(project.db) as s:
        yield s


def make(project: ProjectPaths, store: Store, **ingest: object) -> Ingestor:
    return Ingestor(IngestConfig(**ingest), WatchConfig(), project, store)


def docs(store: Store, status: str | None = "active") -> list:
    return list(queries.documents(store, status=status))


def file_row(store: Store, key: str):
    return store.query("SELECT * FROM files WHERE path = ?", (key,))[0]


def tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_file() and not p.is_symlink():
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
        else:
            out[str(p)] = (os.readlink(p) if p.is_symlink() else "special", st.st_mtime_ns)
    return out


def test_every_format_is_ingested_with_kinds_and_locators(project, store):
    o = project.orig
    (o / "a.txt").write_text(LONG)
    (o / "b.md").write_text("# Notes\n\n" + OTHER)
    (o / "c.py").write_text('def area(width, height):\n    """Area of a rectangle."""\n    return width * height\n')
    chat = {
        "messages": [
            {"role": "user", "content": "How many minutes are in 2 hours?"},
            {"role": "assistant", "content": "There are 120 minutes in 2 hours."},
        ]
    }
    task = {"id": "t1", "family": "arith", "difficulty": 0, "prompt": "What is 2+2?", "answer": "4"}
    (o / "d.jsonl").write_text(
        "\n".join(
            [
                json.dumps(
                    {"text": "A JSONL text record about libraries: shelves, catalogues, reading rooms and quiet study."}
                ),
                json.dumps(chat),
                json.dumps(task),
            ]
        )
        + "\n"
    )
    report = make(project, store).scan()
    assert report.files == 4 and report.ingested == 4 and report.accepted == 6 and not report.dropped
    rows = {(r["file_path"], r["locator"]): r for r in docs(store)}
    assert rows[("orig/a.txt", "chunk 1 (lines 1-1)")]["kind"] == "text"
    assert rows[("orig/b.md", "chunk 1 (lines 1-3)")]["format"] == "md"
    assert rows[("orig/c.py", "chunk 1 (lines 1-3)")]["content"].startswith("def area(")
    assert json.loads(rows[("orig/d.jsonl", "line 2")]["content"])["messages"][1]["content"].startswith("There are 120")
    assert rows[("orig/d.jsonl", "line 3")]["kind"] == "task"
    assert all(r["origin"] == "orig" and r["status"] == "active" for r in rows.values())
    assert file_row(store, "orig/d.jsonl")["n_docs"] == 3
    assert store.scalar("SELECT count(*) FROM events WHERE kind = 'ingested'") == 4


def test_malformed_jsonl_lines_are_dropped_alone_with_line_numbers(project, store):
    good = json.dumps({"text": LONG})
    (project.orig / "mixed.jsonl").write_text(
        "\n".join([good, "{oops", '"just a string"', json.dumps({"txt": "typo"})]) + "\n"
    )
    report = make(project, store).scan()
    assert report.accepted == 1
    assert report.dropped == {"invalid_json": 1, "wrong_type": 1, "missing_field": 1}
    dropped = {r["locator"]: r for r in docs(store, "dropped")}
    assert dropped["line 2"]["reason"].startswith("invalid_json:") and dropped["line 2"]["content"] == "{oops"
    assert set(dropped) == {"line 2", "line 3", "line 4"}
    assert file_row(store, "orig/mixed.jsonl")["status"] == "ingested"


def test_filtered_documents_are_kept_with_reasons(project, store):
    (project.orig / "short.txt").write_text("too short")
    (project.orig / "spam.txt").write_text("buy now " * 100)
    make(project, store).scan()
    reasons = {r["file_path"]: r["reason"] for r in docs(store, "dropped")}
    assert reasons["orig/short.txt"] == "too_short: 9 chars < min_chars 32"
    assert reasons["orig/spam.txt"].startswith("top_ngram_fraction:")
    assert ("dropped", "too_short", 1) in queries.reason_counts(store)


def test_exact_and_near_duplicates(project, store):
    (project.orig / "a.txt").write_text(LONG)
    (project.orig / "b.txt").write_text(LONG.replace("  ", " ") + "\n\n\n")  # normalizes to the same text
    (project.orig / "c.txt").write_text(LONG.replace("gull", "seagull"))
    make(project, store).scan()
    active = docs(store)
    assert [r["file_path"] for r in active] == ["orig/a.txt"]
    dups = {r["file_path"]: r for r in docs(store, "duplicate")}
    assert dups["orig/b.txt"]["reason"].startswith(f"exact_duplicate: same as doc {active[0]['id']} (orig/a.txt")
    assert dups["orig/c.txt"]["reason"].startswith("near_duplicate: ~")
    assert dups["orig/c.txt"]["dup_of"] == active[0]["id"]


def test_near_dup_index_survives_restart(project, store):
    (project.orig / "a.txt").write_text(LONG)
    make(project, store).scan()
    (project.orig / "c.txt").write_text(LONG.replace("gull", "seagull"))
    report = make(project, store).scan()  # a fresh ingestor rebuilds LSH from stored signatures
    assert report.dropped == {"near_duplicate": 1}


def test_removing_the_original_revives_its_duplicate(project, store):
    (project.orig / "a.txt").write_text(LONG)
    (project.orig / "b.txt").write_text(LONG)
    ing = make(project, store)
    ing.scan()
    (project.orig / "a.txt").unlink()
    result = ing.ingest_path(project.orig / "a.txt")
    assert result.status == "removed"
    assert [r["file_path"] for r in docs(store)] == ["orig/b.txt"]
    assert ing.is_duplicate(LONG) is not None


def test_is_duplicate_and_quality_check_for_candidates(project, store):
    (project.orig / "a.txt").write_text(LONG)
    chat = {
        "messages": [
            {"role": "user", "content": "What is the boiling point of water?"},
            {"role": "assistant", "content": "Water boils at 100 degrees Celsius at sea level."},
        ]
    }
    (project.orig / "c.jsonl").write_text(json.dumps(chat) + "\n")
    ing = make(project, store)
    ing.scan()
    assert ing.is_duplicate(LONG + "\n\n").startswith("exact_duplicate:")
    assert ing.is_duplicate(LONG.replace("gull", "seagull")).startswith("near_duplicate:")
    assert ing.is_duplicate(OTHER) is None
    assert ing.is_duplicate(json.dumps(chat, indent=2).replace("\n", " "), kind="chat").startswith("exact_duplicate:")
    before = store.scalar("SELECT count(*) FROM documents")
    assert ing.is_duplicate(OTHER) is None and store.scalar("SELECT count(*) FROM documents") == before


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("bin.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary"),
        ("latin.txt", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, a long enough line".encode("latin-1"), "not_utf8"),
        ("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 5 >>\nstream\n\x00\x01\x02", "binary"),
    ],
)
def test_bad_files_are_quarantined_with_reason(project, store, name, data, code):
    (project.orig / name).write_bytes(data)
    report = make(project, store).scan()
    assert report.quarantined and report.quarantined[0][0] == f"orig/{name}"
    row = file_row(store, f"orig/{name}")
    assert row["status"] == "quarantined" and row["reason"].startswith(code + ":")
    assert [r["path"] for r in queries.quarantined_files(store)] == [f"orig/{name}"]
    assert not docs(store, None)


def test_utf16_with_bom_is_converted(project, store):
    (project.orig / "u16.txt").write_bytes(codecs.BOM_UTF16_LE + LONG.encode("utf-16-le"))
    make(project, store).scan()
    [doc] = docs(store)
    assert doc["content"] == LONG


def test_large_file_is_quarantined_unread(project, store):
    (project.orig / "big.txt").write_bytes(b"a" * (2 * 2**20))
    make(project, store, max_file_mb=1.0).scan()
    row = file_row(store, "orig/big.txt")
    assert row["status"] == "quarantined" and row["reason"].startswith("too_large: 2.0 MiB") and row["sha256"] is None


def test_symlinks_fifo_and_loops(project, store, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text(LONG)
    (project.orig / "inside.txt").write_text(LONG)
    (project.orig / "out.txt").symlink_to(outside)
    (project.orig / "ok.txt").symlink_to(project.orig / "inside.txt")
    (project.orig / "loop1.txt").symlink_to(project.orig / "loop2.txt")
    (project.orig / "loop2.txt").symlink_to(project.orig / "loop1.txt")
    (project.orig / "dangling.txt").symlink_to(project.orig / "missing.txt")
    (project.orig / "sub").mkdir()
    (project.orig / "dirlink").symlink_to(project.orig / "sub")
    os.mkfifo(project.orig / "pipe.txt")
    make(project, store).scan()
    reasons = {r["path"]: r["reason"].split(":")[0] for r in queries.quarantined_files(store)}
    assert reasons == {
        "orig/out.txt": "symlink_outside",
        "orig/loop1.txt": "symlink_loop",
        "orig/loop2.txt": "symlink_loop",
        "orig/dangling.txt": "broken_symlink",
        "orig/dirlink": "symlink_dir",
        "orig/pipe.txt": "not_regular_file",
    }
    assert file_row(store, "orig/ok.txt")["status"] == "ingested"  # a link inside the root is read


def test_orig_tree_is_never_modified(project, store):
    (project.orig / "sub").mkdir()
    (project.orig / "a.txt").write_text(LONG)
    (project.orig / "sub" / "b.jsonl").write_text('{"text": "x"}\n{bad\n')
    (project.orig / "bin.txt").write_bytes(b"\x00\x01\x02")
    (project.orig / ".hidden.txt").write_text(OTHER)
    (project.orig / "out.txt").symlink_to("/etc/hostname")
    os.mkfifo(project.orig / "pipe.txt")
    before = tree_hashes(project.orig)
    ing = make(project, store)
    ing.scan()
    ing.scan()
    assert tree_hashes(project.orig) == before


def test_hidden_and_temp_files_are_ignored(project, store):
    (project.orig / ".draft.txt").write_text(LONG)
    (project.orig / "notes.txt.swp").write_text(LONG)
    (project.orig / ".git").mkdir()
    (project.orig / ".git" / "x.txt").write_text(LONG)
    report = make(project, store).scan()
    assert report.files == 0 and not docs(store, None)


def test_restart_reconciliation(project, store):
    o = project.orig
    (o / "keep.txt").write_text(LONG)
    (o / "change.txt").write_text(OTHER)
    (o / "delete.txt").write_text("Doomed text that will be deleted between the two scans of this test.")
    make(project, store).scan()
    keep_id = next(r["id"] for r in docs(store) if r["file_path"] == "orig/keep.txt")

    (o / "delete.txt").unlink()
    (o / "change.txt").write_text(OTHER + " A sentence was added while the daemon was down.")
    (o / "new.txt").write_text("A brand new file that appeared while nothing was running at all.")
    touched = o / "keep.txt"
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # touched, same bytes

    report = make(project, store).scan()  # a fresh Ingestor, as after a restart
    assert (report.ingested, report.unchanged, report.removed) == (2, 1, 1)
    by_file = {}
    for r in docs(store, None):
        by_file.setdefault(r["file_path"], []).append(r["status"])
    assert by_file["orig/delete.txt"] == ["removed"]
    assert by_file["orig/change.txt"] == ["removed", "active"]
    assert by_file["orig/new.txt"] == ["active"]
    assert next(r["id"] for r in docs(store) if r["file_path"] == "orig/keep.txt") == keep_id
    assert file_row(store, "orig/delete.txt")["status"] == "removed"

    again = make(project, store).scan()
    assert (again.ingested, again.unchanged, again.removed) == (0, 3, 0)


def test_quarantined_file_is_examined_again_when_it_changes(project, store):
    p = project.orig / "fix.txt"
    p.write_bytes(b"\x00\x00binary")
    ing = make(project, store)
    ing.scan()
    assert file_row(store, "orig/fix.txt")["status"] == "quarantined"
    assert ing.ingest_path(p).status == "unchanged"
    p.write_text(LONG)
    assert ing.ingest_path(p).status == "ingested"
    assert file_row(store, "orig/fix.txt")["reason"] is None and len(docs(store)) == 1


def test_deleted_directory_marks_its_files_removed(project, store):
    d = project.orig / "batch"
    d.mkdir()
    (d / "a.txt").write_text(LONG)
    (d / "b.txt").write_text(OTHER)
    ing = make(project, store)
    ing.scan()
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    result = ing.ingest_path(d)
    assert result.status == "removed" and "2 files" in result.reason
    assert not docs(store)


def test_rework_files_get_origin_rework(project, store):
    (project.rework / "accepted-0001.jsonl").write_text(json.dumps({"text": LONG}) + "\n")
    make(project, store).scan()
    [doc] = docs(store)
    assert doc["origin"] == "rework" and doc["file_path"] == "rework/accepted-0001.jsonl"
    assert queries.active_totals(store) == {("rework", doc["split"]): (1, len(LONG))}


def test_heldout_split_is_stable(project, store):
    words = LONG.split()
    lines = [
        json.dumps({"text": " ".join(words[i % 7 :: 3][:12]) + f" {i} " + " ".join(words[(i * 5) % 50 :][:20])})
        for i in range(200)
    ]
    (project.orig / "many.jsonl").write_text("\n".join(lines) + "\n")
    make(project, store).scan()
    first = {r["hash"]: r["split"] for r in docs(store)}
    assert 5 <= list(first.values()).count("heldout") <= 40
    # the file changes (reordered, one line added) and the fraction changes: no document moves
    (project.orig / "many.jsonl").write_text("\n".join(reversed(lines)) + "\n" + json.dumps({"text": LONG}) + "\n")
    make(project, store, heldout_fraction=0.5).scan()
    second = {r["hash"]: r["split"] for r in docs(store)}
    assert {h: second[h] for h in first} == first


def test_missing_orig_is_a_clear_error(project, store):
    project.orig.rmdir()
    from selfloop.errors import SelfloopError

    with pytest.raises(SelfloopError, match="does not exist"):
        make(project, store).scan()


def test_starter_corpus_ingests_cleanly(tmp_path):
    orig = starter_corpus() / "orig"  # the packaged one: files a user dropped into corpus/orig change nothing here
    paths = ProjectPaths(root=tmp_path, orig=orig, rework=tmp_path / "rework", state=tmp_path / "state")
    with Store.open(paths.db) as store:
        report = Ingestor(IngestConfig(), WatchConfig(), paths, store).scan()
        assert not report.quarantined
        assert report.accepted > 3000
        kinds = {r[0] for r in store.query("SELECT DISTINCT kind FROM documents WHERE status = 'active'")}
        assert kinds == {"text", "chat", "task"}  # corpus/orig/tasks: the starter task pack
        assert sum(report.dropped.values()) < 0.02 * report.accepted  # only ASCII-art tables are dropped


def test_cli_ingest_prints_the_table(tmp_path, cli):
    (tmp_path / "config.toml").write_text('[paths]\norig = "data/orig"\nrework = "data/rework"\nstate = "st"\n')
    orig = tmp_path / "data/orig"
    orig.mkdir(parents=True)
    (orig / "a.txt").write_text(LONG)
    (orig / "b.txt").write_text("short")
    (orig / "c.bin").write_bytes(b"\x00")
    proc = cli("ingest", "-c", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "documents accepted" in proc.stdout and "dropped: too_short" in proc.stdout
    assert "orig/c.bin" in proc.stdout and "binary" in proc.stdout
    assert (tmp_path / "st/state.db").exists() and (tmp_path / "data/rework").is_dir()


def test_signatures_of_an_older_hash_scheme_are_recomputed_on_open(project, store):
    (project.orig / "a.txt").write_text(LONG)
    make(project, store).scan()
    # What an older selfloop stored: datasketch's LeanMinHash layout (seed, permutations, 32-bit
    # hash values; a different byte length too), under an older scheme name.
    words = re.findall(r"\w+", LONG.lower())
    values = sorted(hashlib.sha1(" ".join(words[i : i + 5]).encode()).digest()[:4] for i in range(len(words) - 4))
    legacy = (1).to_bytes(8, "little") + (128).to_bytes(4, "little") + b"".join((values * 128)[:128])
    with store.tx() as c:
        c.execute("UPDATE documents SET minhash = ?", (legacy,))
    store.set_meta("corpus.minhash_params", "perm=128 shingle=5 hash=words-xxh3-poly64-top32/affine32")

    ing = make(project, store)
    [doc] = docs(store)
    assert doc["minhash"] == to_bytes(signature(LONG, num_perm=128, shingle_words=5))
    assert store.get_meta("corpus.minhash_params") == f"perm=128 shingle=5 hash={HASH_SCHEME}"
    (project.orig / "c.txt").write_text(LONG.replace("gull", "seagull"))
    assert ing.scan().dropped == {"near_duplicate": 1}


def test_a_damaged_stored_signature_is_recomputed_on_open(project, store):
    (project.orig / "a.txt").write_text(LONG)
    make(project, store).scan()
    [doc] = docs(store)
    with store.tx() as c:
        c.execute("UPDATE documents SET minhash = ?", (b"\x00garbage",))
    ing = make(project, store)
    assert docs(store)[0]["minhash"] == doc["minhash"]
    (project.orig / "c.txt").write_text(LONG.replace("gull", "seagull"))
    assert ing.scan().dropped == {"near_duplicate": 1}


def _mixed_corpus(root: Path) -> None:
    sentences = [s.strip() for s in LONG.split(". ") if s.strip()]
    for i in range(12):
        text = ". ".join(sentences[i % len(sentences) :] + sentences[: i % len(sentences)]) + f". Story number {i}."
        (root / f"story{i:02d}.txt").write_text(text)
    (root / "copy.txt").write_text((root / "story03.txt").read_text())
    (root / "near.md").write_text((root / "story05.txt").read_text().replace("gull", "seagull"))
    (root / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"text": OTHER}),
                "{not json",
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "Where do the trails go?"},
                            {"role": "assistant", "content": OTHER},
                        ]
                    }
                ),
            ]
        )
        + "\n"
    )
    (root / "short.txt").write_text("tiny")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait, a long enough sentence to be a document".encode("latin-1"))
    (root / "sub").mkdir()
    (root / "sub" / "again.txt").write_text(LONG)
    (root / "sub" / "long.txt").write_text("\n\n".join(f"Paragraph {i}: " + OTHER for i in range(40)))


def _outcome(paths: ProjectPaths, **ingest: object) -> tuple:
    with Store.open(paths.db) as store:
        report = make(paths, store, **ingest).scan()
        documents = [
            tuple(r)
            for r in store.query(
                "SELECT id, file_path, locator, kind, hash, content, split, status, reason, minhash, dup_of"
                " FROM documents ORDER BY id"
            )
        ]
        files = [
            tuple(r)
            for r in store.query("SELECT path, sha256, status, reason, n_docs, n_dropped FROM files ORDER BY path")
        ]
    return report.summary(), documents, files


def test_worker_processes_give_the_results_of_one_process(tmp_path, monkeypatch):
    from selfloop.ingest.pool import AnalysisPool

    submitted: list[str] = []
    ready, submit = AnalysisPool.ready, AnalysisPool.submit

    def wait_until_ready(pool) -> bool:  # so every file goes to the workers, not only those read after their start
        while not ready(pool):
            time.sleep(0.01)
        return True

    def counted(pool, data, fmt, cfg):
        submitted.append(fmt)
        return submit(pool, data, fmt, cfg)

    monkeypatch.setattr(AnalysisPool, "submit", counted)
    outcomes = []
    for name, settings in (
        ("serial", {"workers": 1}),
        ("parallel", {"workers": 2, "parallel_min_mb": 0}),
        ("workers up first", None),
    ):
        if settings is None:
            monkeypatch.setattr(AnalysisPool, "ready", wait_until_ready)
            settings = {"workers": 2, "parallel_min_mb": 0}
            submitted.clear()
        paths = ProjectPaths(
            root=tmp_path / name,
            orig=tmp_path / name / "orig",
            rework=tmp_path / name / "rework",
            state=tmp_path / name / "state",
        )
        paths.orig.mkdir(parents=True)
        _mixed_corpus(paths.orig)
        outcomes.append(_outcome(paths, **settings))
    serial, parallel, all_in_workers = outcomes
    assert "exact_duplicate" in serial[0] and "near_duplicate" in serial[0] and "1 quarantined" in serial[0]
    assert parallel == serial and all_in_workers == serial
    assert len(submitted) == sum(
        1 for p in paths.orig.rglob("*") if p.is_file()
    )  # the last scan sent every file to the workers


def test_files_read_before_the_workers_are_up_are_analysed_in_the_scanning_process(project, store, monkeypatch):
    from selfloop.ingest.pool import AnalysisPool

    submitted: list[str] = []
    monkeypatch.setattr(AnalysisPool, "ready", lambda pool: False)  # workers that never come up
    monkeypatch.setattr(AnalysisPool, "submit", lambda pool, data, fmt, cfg: submitted.append(fmt))
    _mixed_corpus(project.orig)
    report = make(project, store, workers=2, parallel_min_mb=0).scan()
    assert submitted == [] and report.files == 19 and report.ingested == 18 and report.accepted == 9


def test_no_more_analysis_processes_than_usable_cpus(project, store, monkeypatch):
    import selfloop.ingest.pool as ingest_module

    (project.orig / "a.txt").write_text(LONG)
    started: list[int] = []
    monkeypatch.setattr(ingest_module, "AnalysisPool", started.append)  # gives no pool: the scan analyses here
    monkeypatch.setattr(ingest_module, "_usable_cpus", lambda: 1)
    assert make(project, store, workers=4, parallel_min_mb=0).scan().accepted == 1
    assert started == []  # one CPU: everything in the scanning process
    monkeypatch.setattr(ingest_module, "_usable_cpus", lambda: 3)
    (project.orig / "b.txt").write_text(OTHER)
    make(project, store, workers=4, parallel_min_mb=0).scan()
    assert started == [3]


def test_workers_start_only_for_enough_new_or_changed_bytes(project, store, monkeypatch):
    import selfloop.ingest.pool as ingest_module

    started: list[int] = []
    monkeypatch.setattr(ingest_module, "AnalysisPool", started.append)  # gives no pool: the scan analyses here
    monkeypatch.setattr(ingest_module, "_usable_cpus", lambda: 2)
    (project.orig / "a.txt").write_text(LONG)
    make(project, store, parallel_min_mb=1).scan()
    assert started == []  # a few KB of new text: not worth a pool
    make(project, store, parallel_min_mb=0).scan()
    assert started == []  # nothing new or changed: nothing to analyse
    (project.orig / "b.txt").write_text(OTHER)
    assert make(project, store, parallel_min_mb=0).scan().accepted == 1
    assert started == [2]


def test_workers_and_their_fork_server_end_when_the_scanning_process_is_killed(tmp_path):
    import psutil

    # A stand-in scanning process: a pool that has done work, then kill -9 (it is our own child).
    script = (
        "import time, psutil\n"
        "from selfloop.config import IngestConfig\n"
        "from selfloop.ingest.pool import AnalysisPool\n"
        "if __name__ == '__main__':\n"
        "    pool = AnalysisPool(2)\n"
        "    [f.result() for f in [pool.submit(b'some words ' * 50, 'txt', IngestConfig()) for _ in range(4)]]\n"
        "    print(*[p.pid for p in psutil.Process().children(recursive=True)], flush=True)\n"
        "    time.sleep(120)\n"
    )
    (tmp_path / "scan.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "scan.py")], stdout=subprocess.PIPE, text=True)
    try:
        helpers = [psutil.Process(int(pid)) for pid in proc.stdout.readline().split()]
        assert len(helpers) >= 3  # the fork server and two workers (and multiprocessing's resource tracker)
    finally:
        proc.kill()
        proc.wait()
    gone, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive, [p.cmdline()[-1][:80] for p in alive]


def test_a_dead_worker_leaves_its_file_to_the_scanning_process(project, store):
    (project.orig / "a.txt").write_text(LONG)
    ing = make(project, store)
    died: Future = Future()
    died.set_exception(BrokenProcessPool("worker killed"))
    result = ing._complete(ing._examine(project.orig / "a.txt"), died)
    assert (result.status, result.accepted) == ("ingested", 1)
    assert [r["file_path"] for r in docs(store)] == ["orig/a.txt"]


def test_text_is_read_whatever_its_name_and_compressed_files_are_opened(project, store):
    import bz2
    import gzip

    import zstandard

    for name in ("GPL-3", "README", "LICENSE", "notes.rst", "paper.tex", "run.log"):
        (project.orig / name).write_text(LONG)
    (project.orig / "page.html").write_text(f"<html><body><script>x()</script><p>{OTHER}</p></body></html>")
    chat = {
        "conversations": [
            {"from": "human", "value": "Why do fishing boats go out so early in the morning?"},
            {"from": "gpt", "value": "The fish feed near the surface at dawn, and the market opens at seven."},
        ]
    }
    (project.orig / "chat.jsonl.gz").write_bytes(gzip.compress(json.dumps(chat).encode()))
    alpaca = [{"instruction": "Name a color of the sky.", "input": "", "output": "Blue, on a clear day."}]
    (project.orig / "alpaca.json.zst").write_bytes(zstandard.ZstdCompressor().compress(json.dumps(alpaca).encode()))
    (project.orig / "notes.txt.bz2").write_bytes(bz2.compress(OTHER.replace("Hikers", "Walkers").encode() * 2))
    report = make(project, store).scan()
    assert not report.quarantined
    by_file = {r["file_path"]: r for r in docs(store, None)}
    assert {r["file_path"] for r in docs(store)} >= {
        "orig/GPL-3",
        "orig/page.html",
        "orig/chat.jsonl.gz",
        "orig/alpaca.json.zst",
        "orig/notes.txt.bz2",
    }
    assert by_file["orig/page.html"]["content"] == OTHER  # the script is gone
    assert by_file["orig/chat.jsonl.gz"]["kind"] == "chat" and by_file["orig/alpaca.json.zst"]["kind"] == "chat"
    # The same text under six names: one active, the others exact duplicates, none refused.
    same = [r for r in docs(store, None) if r["content"] == LONG]
    assert len(same) == 6 and sum(r["status"] == "active" for r in same) == 1


def test_a_decompression_bomb_is_quarantined_past_the_cap(project, store):
    import gzip

    (project.orig / "bomb.txt.gz").write_bytes(gzip.compress(b"a " * (2 << 20)))  # 4 MiB from about 4 KiB
    make(project, store, max_file_mb=1.0).scan()
    row = file_row(store, "orig/bomb.txt.gz")
    assert row["status"] == "quarantined" and row["reason"].startswith("too_large: gzip data decompresses to more")


def test_a_settings_change_reexamines_quarantined_files(project, store):
    qa = {"question": "What is the capital of France?", "answer": "Paris is the capital of France."}
    (project.orig / "qa.json").write_text(json.dumps(qa))
    make(project, store).scan()
    row = file_row(store, "orig/qa.json")
    assert row["status"] == "quarantined" and row["reason"].startswith("unsupported_json:")
    assert make(project, store).scan().unchanged == 1  # same settings: not read again
    report = make(project, store, json_fields={"question": "prompt", "answer": "completion"}).scan()
    assert report.ingested == 1 and file_row(store, "orig/qa.json")["status"] == "ingested"
    [doc] = docs(store)
    assert json.loads(doc["content"])["messages"][1] == {"role": "assistant", "content": qa["answer"]}
