"""One frontier step in process: its progress file, and the label sources a family gets."""

import json
from pathlib import Path

import pytest

from selfloop.config import FrontierConfig
from selfloop.errors import ConfigError
from selfloop.frontier.families import Addition, load_family
from selfloop.frontier.run import arm_of, step
from selfloop.testing import TINY_FRONTIER


def test_a_step_reports_its_progress_to_a_file(tmp_path):
    progress = tmp_path / "progress.json"
    cfg = FrontierConfig(**TINY_FRONTIER)
    result = step(cfg, "addition", tmp_path / "home", tmp_path / "rework", progress=progress)
    assert result["kind"] == "gen0"
    assert json.loads(progress.read_text()) == {"what": "generation 0", "done": 20, "total": 20}


def test_label_sources_per_family_and_tool_only_where_programs_run(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "helpers"))
    cfg = FrontierConfig(**{**TINY_FRONTIER, "family_sources": {"reverse": ["tool", "self"]}})
    assert arm_of(cfg, Addition()).sources == ("self", "tool")
    assert arm_of(cfg, load_family("reverse")).sources == ("tool", "self")
    copy = load_family("frontier_plugin:Copy")  # writes no programs: grows on its other sources
    assert arm_of(cfg, copy).sources == ("self",)
    with pytest.raises(ConfigError, match="no label source"):
        arm_of(cfg.model_copy(update={"label_sources": ["tool"]}), copy)
    assert arm_of(cfg.model_copy(update={"program_share": 0.0}), Addition()).sources == ("self",)
