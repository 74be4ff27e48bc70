import json

from rich.console import Console

from selfloop.config import Config, DashboardConfig, ProjectPaths
from selfloop.dashboard import live, render, snapshot
from selfloop.store import Store


def _text(renderable, width=140) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.export_text()


def _paths(tmp_path):
    return ProjectPaths.of(Config(), tmp_path)


def test_renders_empty_project_without_a_store(tmp_path):
    text = _text(render(snapshot(None, _paths(tmp_path)), 140))
    assert "no daemon running" in text
    assert "idle" in text and "no data yet" in text


def test_renders_live_state(tmp_path):
    paths = _paths(tmp_path)
    store = Store.open(paths.db)
    with store.tx() as c:
        for step in range(0, 40, 10):
            c.execute(
                "INSERT INTO train_metrics (generation, step, kind, loss, ts) VALUES (2, ?, 'train', ?, 0)",
                (step, 5 - step / 50),
            )
        for gen, status, loss, reason in [
            (0, "promoted", 4.5, "first generation"),
            (1, "promoted", 4.1, "loss improved 8.9%"),
            (2, "rejected", 4.4, "held-out loss 4.4 > 4.1"),
        ]:
            gen_dir = paths.models / f"gen-{gen:04d}"
            gen_dir.mkdir(parents=True)
            (gen_dir / "manifest.json").write_text(
                json.dumps({"samples": [{"kind": "text", "prompt": "The", "completion": f" sample of gen {gen}"}]})
            )
            c.execute(
                "INSERT INTO generations (id, parent, path, status, "
                "metrics, gate, created_at) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (
                    gen,
                    gen - 1 if gen else None,
                    str(gen_dir),
                    status,
                    json.dumps({"loss": loss, "tasks": {"addition": gen / 4}}),
                    json.dumps({"reason": reason}),
                ),
            )
        (paths.models / "current").write_text("gen-0001\n")
        for reason, n in [("near_duplicate", 3), ("lost_a_vs_b", 2)]:
            for _ in range(n):
                c.execute(
                    "INSERT INTO candidates (strategy, kind, content, status, reason, "
                    "created_at) VALUES ('rewrite', 'text', 'x', 'rejected', ?, 0)",
                    (reason,),
                )
        first = c.execute("SELECT MIN(id) FROM candidates").fetchone()[0]
        for i, (judge, status, reason) in enumerate(
            [
                ("a_vs_b", "reject", "lost_a_vs_b: fluency"),
                ("a_vs_b", "reject", "lost_a_vs_b: quality"),
                ("a_vs_b", "accept", "B beats A"),
                ("doc_quality", "reject", "c4_sentences: too_few_sentences"),
            ]
        ):
            c.execute(
                "INSERT INTO verdicts (candidate_id, judge, status, reason, created_at) VALUES (?, ?, ?, ?, 0)",
                (first + i, judge, status, reason),
            )
        c.execute(
            "INSERT INTO files (path, origin, status, reason, updated_at) VALUES "
            "('orig/blob.bin', 'orig', 'quarantined', 'binary: 31% control characters', 0)"
        )
        c.execute(
            "INSERT INTO documents (file_path, locator, origin, kind, format, "
            "hash, content, n_chars, split, status, created_at, updated_at) "
            "VALUES ('orig/a.txt', 'chunk 0', 'orig', 'text', 'txt', 'h', 'hello', 12345, 'train', 'active', 0, 0)"
        )
        c.execute(
            "INSERT INTO meta VALUES ('daemon.state', 'cycle'), "
            "('sandbox.backend', 'bwrap'), ('train.total_steps', '100')"
        )
        c.execute("INSERT INTO cycles (started_at, phase, status, generation) VALUES (0, 'train', 'running', 2)")
        c.execute(
            "INSERT INTO train_metrics (generation, step, kind, loss, "
            "tokens_per_s, eta_s, ts) VALUES (2, 40, 'train', 3.2, 900, 90, 0)"
        )
    store.set_progress("rework", 12, 64, "candidates")
    store.event("promoted", "generation 1 promoted: loss improved 8.9%")

    reader = Store.open(paths.db, readonly=True)
    text = _text(render(snapshot(reader, paths), 140))
    for expected in [
        "phase train",
        "sandbox bwrap",
        "generation 1",
        "12/64 candidates",
        "40/100 steps",
        "900.0 tok/s",
        "ETA 1m30s",
        "loss, generation 2",
        "held-out loss by generation",
        "pass@1 by generation",
        "held-out loss 4.4 > 4.1",
        "near_duplicate",
        "lost_a_vs_b",
        "orig/blob.bin",
        "binary: 31% control characters",
        "orig.active",
        "12,345",
        "generation 1 promoted",
        "sample of gen 1",
        "1/3 (33%)",  # a judge's accept rate
        "c4_sentences 1",  # and what it rejected for
    ]:
        assert expected in text, expected
    assert "sample of gen 2" not in text  # samples come from the current champion only
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 140


def test_live_loop_is_read_only_and_stops(tmp_path):
    paths = _paths(tmp_path)
    Store.open(paths.db).close()
    before = paths.db.read_bytes()
    console = Console(width=120, record=True, force_terminal=False, color_system=None)
    ticks = iter(range(3))
    live(paths, DashboardConfig(refresh_per_second=20), stop=lambda: next(ticks, None) is None, console=console)
    assert "no daemon running" in console.export_text()
    assert paths.db.read_bytes() == before


def test_recipe_search_shows_its_history_and_the_curve_of_the_recipe_training_now(tmp_path):
    from selfloop.store.runs import mark_recipe_promoted as mark_promoted
    from selfloop.store.runs import record_recipes as record

    paths = _paths(tmp_path)
    store = Store.open(paths.db)
    with store.tx() as c:
        # generation 3 trains two recipes one after the other: the curve shows the second only
        for step, loss in [(10, 5.0), (20, 4.0), (10, 4.5), (20, 3.5)]:
            c.execute(
                "INSERT INTO train_metrics (generation, step, kind, loss, ts) VALUES (3, ?, 'train', ?, 0)",
                (step, loss),
            )
    entries = [
        {
            "params": {"learning_rate": lr, "max_steps": 20, "rework_max_share": 0.5},
            "decision": reason,
            "figures": {"loss": loss, "tasks": {}},
        }
        for lr, loss, reason in [(1e-4, 4.2, "no figure improved"), (4e-4, 3.9, "improved: loss -7%")]
    ]
    record(store, 7, 3, entries, chosen=1)
    mark_promoted(store, 7)
    snap = snapshot(Store.open(paths.db, readonly=True), paths)
    assert snap.train_curve == [(10, 4.5), (20, 3.5)]
    text = _text(render(snap, 160), 160)
    for expected in ["recipe search", "1.00e-04", "4.00e-04", "(incumbent)", "promoted", "no figure improved"]:
        assert expected in text, expected


def test_frontier_panel_shows_accuracy_by_level_and_label_sources(tmp_path):
    from selfloop.store.frontier import record_step

    paths = _paths(tmp_path)
    store = Store.open(paths.db)
    gen0 = {"family": "addition", "kind": "gen0", "generation": 0, "promoted": True, "reason": "generation 0"}
    record_step(store, {**gen0, "accuracy_by_level": {"1": 1.0, "4": 0.99, "5": 0.19}, "frontier": {"level": 5}})
    labels = {"source": "self", "kept": 81, "yield": 0.03, "audited_label_accuracy": 1.0}
    record_step(
        store,
        {
            **gen0,
            "kind": "round",
            "round": 1,
            "level": 5,
            "promoted": False,
            "reason": "level 5: not better beyond noise",
            "labels": labels,
        },
    )
    record_step(
        store,
        {
            **gen0,
            "kind": "round",
            "round": 2,
            "level": 5,
            "generation": 1,
            "reason": "level 5 better",
            "labels": {**labels, "source": "self+tool", "kept": 300, "audited_label_accuracy": 0.9},
            "kept_by_source": {"self": 100, "tool": 200},
            "accuracy_by_level": {"1": 1.0, "4": 1.0, "5": 0.97, "6": 0.4},
            "frontier": {"level": 6},
        },
    )
    text = _text(render(snapshot(store, paths), 160), 160)
    store.close()
    assert "frontier: addition" in text
    assert "generator labels" in text  # generation 0's data
    # Both rounds' labels made generation 1 (the rejected round's joined the retry), counted by source.
    assert "self 181 tool 200" in text
    assert "0.92" in text  # audited share of those 381: (81 * 1.0 + 300 * 0.9) / 381
    assert "0.97" in text and "0.19" in text
    assert "last: round 2 at level 5: promoted" in text


def test_a_running_frontier_step_shows_a_progress_bar(tmp_path):
    from selfloop.loop.frontier import publish_progress

    paths = _paths(tmp_path)
    store = Store.open(paths.db)
    progress = tmp_path / "progress.json"
    publish_progress(store, progress, "addition")  # no file yet: nothing to show, no error
    progress.write_text(json.dumps({"what": "round 3: tool labels at level 6", "done": 0, "total": 1}))
    publish_progress(store, progress, "addition")
    progress.write_text(json.dumps({"what": "round 3: training", "done": 150, "total": 300}))
    publish_progress(store, progress, "addition")
    text = _text(render(snapshot(store, paths), 160), 160)
    store.clear_progress("frontier")
    idle = _text(render(snapshot(store, paths), 160), 160)
    store.close()
    assert "150/300 steps" in text and "addition: round 3: training" in text
    assert "round 3" not in idle
