"""One cycle end to end: gen 0, a gated challenger, a rejected damaged model, resume at phase boundaries."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from lifecycle_helpers import chat_record, fill_corpus, make_project, paragraph

from selfloop.loop import phases as phases_mod
from selfloop.loop.cycle import PHASES, CycleContext, CycleInterrupted, run_cycle
from selfloop.model.factory import load_pretrained
from selfloop.model.registry import Registry
from selfloop.store import Store

pytestmark = pytest.mark.slow
NO_INGEST = [p for p in PHASES if p[0] != "ingest"]  # these tests insert document rows directly


def write_corpus(orig):
    (orig / "prose").mkdir()
    for i in range(40):
        (orig / "prose" / f"p{i:02d}.txt").write_text(paragraph(i, n=8) + "\n")
    with (orig / "chat.jsonl").open("w") as f:
        for i in range(30):
            f.write(json.dumps(chat_record(i)) + "\n")


def test_cycle_once_cli_makes_generation_zero_then_gates_generation_one(tmp_path, cli):
    config_path, _, paths = make_project(tmp_path / "proj")
    write_corpus(paths.orig)
    first = cli("cycle", "--once", "-c", str(config_path), timeout=300)
    assert first.returncode == 0, first.stderr
    for phase in (
        "train: generation 0 from scratch",
        "evaluate: challenger loss",
        "gate: PROMOTE generation 0",
        "cycle done: promoted",
    ):
        assert phase in first.stdout
    reg = Registry(paths.models)
    assert reg.current() == 0
    second = cli("cycle", "--once", "-c", str(config_path), timeout=300)
    assert second.returncode == 0, second.stderr
    assert "train: generation 1 from gen-0000" in second.stdout and "champion loss" in second.stdout
    m = reg.manifest(1)
    assert m["parent"] == 0 and m["status"] in ("promoted", "rejected") and m["gate"]["reason"]
    assert m["metrics"]["loss"] > 0 and m["data"]["documents"] > 0 and m["train"]["global_step"] == 8
    assert reg.current() == (1 if m["status"] == "promoted" else 0)
    with Store.open(paths.db, readonly=True) as store:
        cycles = store.query("SELECT status, phase, generation FROM cycles ORDER BY id")
        assert [(c["status"], c["phase"], c["generation"]) for c in cycles] == [
            ("done", "done", 0),
            ("done", "done", 1),
        ]
        assert store.scalar("SELECT COUNT(*) FROM generations") == 2
        detail = json.loads(store.scalar("SELECT detail FROM cycles WHERE id = 2"))
        assert list(detail["phases"]) == ["ingest", "rework", "judge", "train", "evaluate", "gate", "promote"]
        assert detail["phases"]["rework"]["out"] == {"skipped": "rework disabled"}
        assert detail["phases"]["ingest"]["out"]["unchanged"] > 0  # nothing new the second time
    assert not (paths.runs / "gen-0001").exists()  # checkpoints dropped once decided
    models = cli("models", "-c", str(config_path), env={"COLUMNS": "200"})
    assert models.returncode == 0 and "gen" in models.stdout
    gen = cli("generate", "The cat", "--n", "2", "--max-new-tokens", "6", "-c", str(config_path))
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.count("--- sample") == 2 and "tokens/s" in gen.stdout


def test_gate_rejects_a_damaged_challenger_and_promotes_a_better_one(tmp_path):
    config_path, cfg, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        fill_corpus(store)
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
        reg = Registry(paths.models, store)
        assert reg.current() == 0

        def damaged_train(ctx: CycleContext) -> dict:
            model, tok = load_pretrained(reg.path(0))
            torch.manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.5)
            out = tmp_path / "damaged"
            model.save_pretrained(out)
            tok.save_pretrained(out)
            reg.add(ctx.generation, out, {"parent": 0}, {})
            return {"parent": 0}

        detail = run_cycle(
            cfg, paths, store, config_path=config_path, phases=[("train", damaged_train), *NO_INGEST[1:]]
        )
        gate = detail["phases"]["gate"]["out"]
        assert not gate["promote"] and "regressed" in gate["reason"]
        assert reg.current() == 0 and reg.manifest(1)["status"] == "rejected"

        detail = run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
        gate = detail["phases"]["gate"]["out"]
        assert gate["promote"], gate["reason"]
        assert reg.current() == 2 and reg.manifest(2)["parent"] == 0
        figures = gate["figures"]
        assert figures["challenger"]["loss"] < figures["champion"]["loss"]
        assert reg.manifest(2)["samples"] and reg.manifest(2)["metrics"]["text_loss"] > 0


def test_an_interrupted_cycle_resumes_at_its_phase_boundary(tmp_path, monkeypatch):
    config_path, cfg, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        fill_corpus(store)
        calls = {"evaluate": 0}
        real_evaluate = phases_mod.phase_evaluate

        def flaky_evaluate(ctx):
            calls["evaluate"] += 1
            if calls["evaluate"] == 1:
                raise KeyboardInterrupt  # Ctrl-C / SIGTERM between phases
            return real_evaluate(ctx)

        phases = [(n, flaky_evaluate if n == "evaluate" else f) for n, f in NO_INGEST]
        with pytest.raises(KeyboardInterrupt):
            run_cycle(cfg, paths, store, config_path=config_path, phases=phases)
        row = store.query("SELECT id, status, phase, generation FROM cycles")[0]
        assert (row["status"], row["phase"], row["generation"]) == ("interrupted", "evaluate", 0)
        train_rows = store.scalar("SELECT COUNT(*) FROM train_metrics")
        assert Registry(paths.models).on_disk() == [0] and Registry(paths.models).current() is None

        detail = run_cycle(cfg, paths, store, config_path=config_path, phases=phases)
        assert store.scalar("SELECT COUNT(*) FROM cycles") == 1  # the same cycle, resumed
        assert store.scalar("SELECT COUNT(*) FROM train_metrics") == train_rows  # training was not redone
        assert calls["evaluate"] == 2 and detail["phases"]["promote"]["out"]["current"] == 0
        assert store.scalar("SELECT status FROM cycles") == "done"


def test_a_stop_request_interrupts_at_the_next_phase_boundary(tmp_path):
    config_path, cfg, paths = make_project(tmp_path)
    with Store.open(paths.db) as store:
        fill_corpus(store)
        trained = lambda: Registry(paths.models).on_disk() == [0]  # noqa: E731 - stop once training is done
        with pytest.raises(CycleInterrupted, match="before evaluate"):
            run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST, should_stop=trained)
        assert store.query("SELECT status, phase FROM cycles")[0][:] == ("interrupted", "evaluate")
        detail = run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
        assert detail["phases"]["promote"]["out"]["current"] == 0
        assert store.scalar("SELECT COUNT(*) FROM cycles") == 1


def test_a_generation_keeps_its_metrics_config_and_tensorboard_logs_beside_its_weights(tmp_path, cli):
    pytest.importorskip("tensorboard")
    config_path, cfg, paths = make_project(tmp_path, {"train": {"report_to": "tensorboard", "log_steps": 2}})
    with Store.open(paths.db) as store:
        fill_corpus(store)
        run_cycle(cfg, paths, store, config_path=config_path, phases=NO_INGEST)
    gen = Registry(paths.models).path(0)
    assert not (paths.runs / "gen-0000").exists()  # the run dir goes once decided; what matters stayed
    rows = [json.loads(line) for line in (gen / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["generation"] == 0 and r["loss"] > 0 for r in rows)
    with (gen / "metrics.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == [r["step"] for r in rows]
    assert [float(r["loss"]) for r in table] == [r["loss"] for r in rows]
    assert json.loads((gen / "selfloop_config.json").read_text())["train"]["report_to"] == "tensorboard"
    assert (gen / "train.log").is_file()
    assert list((gen / "logs").rglob("events.out.tfevents.*"))  # TensorBoard's own event files
    png = tmp_path / "loss.png"
    r = cli("models", "--plot", str(png), "-c", str(config_path))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and "1 generation" in r.stdout
