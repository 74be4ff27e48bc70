import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from selfloop.config import Config, load_config, parse_config, render_toml
from selfloop.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def test_shipped_config_is_the_rendered_defaults():
    # The models are the single source of defaults; config.toml must not drift from them.
    shipped = (REPO / "config.toml").read_text()
    assert shipped == render_toml(), (
        "run: python -c 'from selfloop.config import render_toml; print(render_toml(), end=\"\")' > config.toml"
    )
    assert parse_config(tomllib.loads(shipped)) == Config()


def test_every_field_is_documented():
    def walk(model):
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                yield from walk(value)
            else:
                yield name, field.description

    missing = [name for name, desc in walk(Config()) if not desc]
    assert not missing


def test_empty_file_gives_defaults(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("")
    cfg, paths = load_config(p)
    assert cfg == Config()
    assert paths.orig == tmp_path / "corpus" / "orig"
    assert paths.db == tmp_path / ".selfloop" / "state.db"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[trian]\n", 'unknown key trian: did you mean "train"?'),
        ("[train]\nlerning_rate = 0.1\n", 'unknown key train.lerning_rate: did you mean "train.learning_rate"?'),
        ("[train]\nmax_steps = -3\n", "train.max_steps = -3: Input should be greater than or equal to 1"),
        ("[train]\nmax_steps = 'many'\n", "train.max_steps = 'many': Input should be a valid integer"),
        (
            "[sandbox]\nbackend = 'vm'\n",
            "sandbox.backend = 'vm': Input should be 'auto', 'docker', 'bwrap' or 'process'",
        ),
        ("[model]\nn_embd = 30\n", "n_embd (30) must be divisible by n_head (4)"),
        ("[ingest]\nmin_chars = 500\nmax_chars = 100\n", "min_chars (500) must be below max_chars (100)"),
        ("paths = 3\n", "paths = 3: Input should be a valid dictionary"),
    ],
)
def test_bad_values_name_key_value_and_rule(tmp_path, text, expected):
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert any(expected in line for line in e.value.lines), e.value.lines
    assert all(line.startswith(str(p)) for line in e.value.lines)


def test_all_errors_reported_at_once(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("[train]\nmax_steps = 0\nbatch_size = 0\n[gate]\nbogus = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert len(e.value.lines) == 3


@pytest.mark.parametrize("content", [b"[train\n", b"\xff\xfe\x00garbage", b"x = = 1"])
def test_unparseable_files(tmp_path, content):
    p = tmp_path / "config.toml"
    p.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_env_overrides_file(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_text("[train]\nmax_steps = 5\n")
    monkeypatch.setenv("SELFLOOP_TRAIN__MAX_STEPS", "9")
    monkeypatch.setenv("SELFLOOP_SANDBOX__BACKEND", "process")
    cfg, _ = load_config(p)
    assert cfg.train.max_steps == 9
    assert cfg.sandbox.backend == "process"
    cfg, _ = load_config(p, env=False)
    assert cfg.train.max_steps == 5


def test_bad_env_override_is_a_clean_error(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_text("")
    monkeypatch.setenv("SELFLOOP_TRAIN__MAX_STEPS", "lots")
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(p)


def test_validate_config_cli(tmp_path, cli):
    good = tmp_path / "good.toml"
    good.write_text("[train]\nmax_steps = 3\n")
    r = cli("validate-config", str(good))
    assert r.returncode == 0 and r.stdout.startswith("OK")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmax_step = 3\nlearning_rate = 7\n")
    r = cli("validate-config", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert 'did you mean "train.max_steps"' in r.stderr
    assert "train.learning_rate = 7" in r.stderr


def test_train_report_to_takes_the_trainers_integrations():
    assert Config().train.report_to == "none"
    assert parse_config({"train": {"report_to": "tensorboard"}}).train.report_to == "tensorboard"
    assert parse_config({"train": {"report_to": ["tensorboard", "wandb"]}}).train.report_to == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match="unknown integration 'tensorbord'"):
        parse_config({"train": {"report_to": "tensorbord"}})
    with pytest.raises(ConfigError, match="stand alone"):
        parse_config({"train": {"report_to": ["none", "wandb"]}})


def test_deprecated_extensions_still_load_and_validate_config_says_so(tmp_path, cli):
    old = tmp_path / "config.toml"
    old.write_text('[ingest]\nextensions = [".txt", ".md", ".py", ".jsonl"]\n')
    cfg, _ = load_config(old)
    assert cfg.ingest.readers[".json"] == "json"  # the defaults hold; the old key limits nothing
    r = cli("validate-config", str(old))
    assert r.returncode == 0 and r.stdout.startswith("OK")
    assert "ingest.extensions is deprecated and ignored" in r.stderr and "ingest.readers" in r.stderr
    assert "extensions" not in render_toml()


def test_readers_add_to_the_defaults_and_are_checked(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text('[ingest.readers]\n".rst" = "md"\n\n[ingest.json_fields]\nquestion = "prompt"\n')
    cfg, _ = load_config(p)
    assert cfg.ingest.readers[".rst"] == "md" and cfg.ingest.readers[".py"] == "py"
    assert cfg.ingest.json_fields == {"question": "prompt"}
    p.write_text('[ingest.readers]\n".rst" = "pdf"\n')
    with pytest.raises(ConfigError, match="ingest.readers.*rst"):
        load_config(p)
