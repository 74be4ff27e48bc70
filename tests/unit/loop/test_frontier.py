"""The daemon's frontier steps: generation 0, then rounds, in a real child process, recorded in a real store."""

import json
from pathlib import Path

import pytest

from selfloop.config import FrontierConfig, SandboxConfig
from selfloop.errors import SelfloopError
from selfloop.ingest.scan import locate, walk
from selfloop.loop.frontier import run_step
from selfloop.store import Store
from selfloop.store.frontier import steps
from selfloop.testing import TINY_FRONTIER, make_project, tiny_config

HELPERS = Path(__file__).resolve().parents[2] / "helpers"

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HELPERS))  # the child imports the plugin family from there
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _, cfg, paths = make_project(tmp_path / "p", tiny_config())
    store = Store.open(paths.db)
    yield paths, store
    store.close()


def test_generation_0_then_rounds_that_keep_their_labels(project):
    paths, store = project
    cfg = FrontierConfig(**TINY_FRONTIER)
    sandbox = SandboxConfig(backend="process")
    first = run_step(cfg, "addition", paths, store, should_stop=lambda: False, sandbox=sandbox)
    assert first["kind"] == "gen0" and first["promoted"] and first["generation"] == 0
    assert (paths.frontier / "addition" / "CHAMPION").read_text().strip() == "gen-0000"
    for n in (1, 2):
        result = run_step(cfg, "addition", paths, store, should_stop=lambda: False, sandbox=sandbox)
        assert result["kind"] == "round" and result["round"] == n
        assert result["labels"]["source"] == "self+tool" and "reason" in result
        assert set(result["labels_by_source"]) == {"self", "tool"}
        path = paths.frontier_rework / "addition" / f"round-{n:04d}.jsonl"
        assert path.is_file()  # written whether or not the gate promotes: a rejected round's data stays
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["label_source"] in ("self", "tool") and isinstance(record["audit_correct"], bool)
            assert record["strategy"] == "frontier" and record["prompt"].endswith("=")
            # A tool label trains the direct answer and, with its prompt, the program that printed it.
            assert (record["label_source"] == "tool") == record["program_prompt"].endswith("?")
    rows = steps(store, "addition")
    assert [r["kind"] for r in rows] == ["gen0", "round", "round"]
    events = store.query("SELECT message FROM events WHERE kind = 'frontier'")
    assert len(events) == 3 and "generation 0 trained" in events[0]["message"]


def test_a_plugin_family_named_in_config_runs(project):
    paths, store = project
    cfg = FrontierConfig(**{**TINY_FRONTIER, "families": ["frontier_plugin:Copy"]})
    result = run_step(cfg, cfg.families[0], paths, store, should_stop=lambda: False)
    assert result["family"] == "copy" and (paths.frontier / "copy" / "gen-0000" / "model.safetensors").is_file()


def test_a_broken_step_is_an_error_with_its_reason(project):
    paths, store = project
    cfg = FrontierConfig(**TINY_FRONTIER)
    (paths.frontier / "addition").mkdir(parents=True)
    (paths.frontier / "addition" / "CHAMPION").write_text("gen-0000\n")
    (paths.frontier / "addition" / "gen-0000").mkdir()
    (paths.frontier / "addition" / "gen-0000" / "frontier.json").write_text("{not json")
    with pytest.raises(SelfloopError, match="frontier step of addition failed"):
        run_step(cfg, "addition", paths, store, should_stop=lambda: False)


def test_ingest_never_reads_the_frontier_labels(tmp_path):
    _, _, paths = make_project(tmp_path / "p", tiny_config())
    label_file = paths.frontier_rework / "addition" / "round-0001.jsonl"
    label_file.parent.mkdir(parents=True)
    label_file.write_text('{"prompt": "1+1=", "completion": "20"}\n')
    assert locate(label_file, paths) is None
    assert label_file not in set(walk(paths, []))


def test_a_family_that_masters_max_level_stops_asking(project):
    paths, store = project
    cfg = FrontierConfig(**TINY_FRONTIER)
    run_step(cfg, "addition", paths, store, should_stop=lambda: False)
    state_file = paths.frontier / "addition" / "gen-0000" / "frontier.json"
    state = json.loads(state_file.read_text())
    state["frontier"]["level"] = cfg.max_level
    state["accuracy_by_level"] = {str(cfg.max_level): 0.99}
    state_file.write_text(json.dumps(state))
    result = run_step(cfg, "addition", paths, store, should_stop=lambda: False)
    assert result["kind"] == "done" and "max_level" in result["reason"]
    assert [r["kind"] for r in steps(store, "addition")] == ["gen0"]  # nothing ran, nothing recorded
