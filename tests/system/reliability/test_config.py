"""Reliability: config fuzzing. Whatever a config file holds, loading it ends in a Config
or a ConfigError whose every line names the file (never another exception, never a
traceback), and the CLI reports it in one clean block with exit code 2."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from selfloop.config import Config, load_config, parse_config
from selfloop.errors import ConfigError


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """Real section and key names (nested models as dicts), so the fuzz reaches past 'unknown key'."""
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        ann = f.annotation
        out[name] = _schema(ann) if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return out


SCHEMA = _schema(Config)

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "auto",
            "cpu",
            "scratch",
            "docker",
            "bwrap",
            "process",
            "cosine",
            "answer",
            ".txt",
            "0 * * * *",
            "",
            "../../etc",
            "~",
            "\x00",
            "nan",
            "1e309",
        ]
    ),
    st.dates(),
    st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def section(shape: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if shape is None:
        return values
    keys = st.sampled_from(sorted(shape)) | st.text(min_size=1, max_size=12)
    table = st.dictionaries(keys, st.deferred(lambda: values), max_size=6).flatmap(
        lambda d: st.fixed_dictionaries({k: (section(shape[k]) if k in shape else st.just(v)) for k, v in d.items()})
    )
    return st.one_of(table, values)  # sometimes the section is not even a table


configs = st.dictionaries(
    st.sampled_from(sorted(SCHEMA)) | st.text(min_size=1, max_size=10), st.none(), max_size=6
).flatmap(lambda d: st.fixed_dictionaries({k: section(SCHEMA.get(k)) for k in d}))


def _toml_safe(value: Any) -> bool:
    # TOML has no null and tomli_w refuses some values; those raw mappings are fuzzed through parse_config only.
    try:
        tomli_w.dumps({"k": value})
    except (TypeError, ValueError):
        return False
    return True


def assert_clean(err: ConfigError, source: str) -> None:
    assert err.lines and all(line.startswith(source) for line in err.lines), err.lines
    assert all("Traceback" not in line for line in err.lines)
    assert str(err).startswith(source)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=configs)
def test_any_mapping_validates_or_fails_cleanly(raw):
    try:
        cfg = parse_config(raw, source="fuzz.toml", env=False)
    except ConfigError as e:
        assert_clean(e, "fuzz.toml")
    else:
        assert isinstance(cfg, Config)
        # What validates also survives a round trip through the file format.
        assert parse_config(cfg.model_dump(mode="json"), env=False) == cfg


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(raw=configs)
def test_any_toml_file_loads_or_fails_cleanly(raw, tmp_path):
    if not _toml_safe(raw):
        return
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    try:
        load_config(path, env=False)
    except ConfigError as e:
        assert_clean(e, str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_any_bytes_load_or_fail_cleanly(data, tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    try:
        load_config(path, env=False)
    except ConfigError as e:
        assert_clean(e, str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(
        [
            "TRAIN__MAX_STEPS",
            "MODEL__N_EMBD",
            "SANDBOX__BACKEND",
            "INGEST__EXTENSIONS",
            "SCHEDULE__CRON",
            "TASKS__FAMILIES",
            "GATE",
            "BOGUS__KEY",
            "TRAIN__LAUNCHER__KIND",
            "MODEL__DTYPE",
            "JUDGE__TEXT",
        ]
    ),
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
def test_any_environment_override_validates_or_fails_cleanly(key, value, tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text("")
    monkeypatch.setenv(f"SELFLOOP_{key}", value)
    try:
        load_config(path)
    except ConfigError as e:
        assert_clean(e, str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    interval=st.floats(min_value=1e-6, max_value=1e15),
    grace=st.floats(min_value=0, max_value=1e15),
    stop=st.floats(min_value=1e-6, max_value=1e15),
    cron=st.one_of(
        st.just(""),
        st.text(alphabet="0123456789*/,- LWJANFEBMONSUx#?", max_size=24),
        st.sampled_from(["0 * * * *", "*/5 * * * *", "61 25 * * *", "0 0 31 2 *", "0 0 * * mon-fri", "@daily"]),
    ),
)
def test_a_schedule_that_validates_can_be_scheduled(interval, grace, stop, cron, tmp_path):
    # A value that passes validation but breaks the scheduler would stop the daemon at
    # startup (or on SIGHUP): what validates must build the daemon's trigger and waits.
    from selfloop.loop.daemon import Daemon

    path = tmp_path / "config.toml"
    path.write_text(
        tomli_w.dumps(
            {"schedule": {"interval_minutes": interval, "misfire_grace_s": grace, "stop_timeout_s": stop, "cron": cron}}
        )
    )
    try:
        daemon = Daemon(path)
    except ConfigError as e:
        assert_clean(e, str(path))
        return
    trigger = daemon._cycle_trigger()
    trigger.get_next_fire_time(None, datetime.now(timezone.utc))
    timedelta(seconds=daemon.cfg.schedule.misfire_grace_s)  # APScheduler's misfire check
    assert daemon.cfg.schedule.stop_timeout_s <= threading.TIMEOUT_MAX  # the shutdown wait


CLI_CASES = {
    "types": '[train]\nmax_steps = "many"\nlearning_rate = -1\n[model]\nn_embd = 30\nn_head = 4\n',
    "unknown": "[trian]\nmax_steps = 3\n[model]\nn_layers = 2\n",
    "not_toml": "[train\nmax_steps = = 3\n",
    "section_not_table": 'model = "big"\nsandbox = [1, 2]\n',
    "huge_numbers": (
        "[train]\nmax_steps = 9223372036854775807\nlearning_rate = inf\n[schedule]\ninterval_minutes = 1e300\n"
    ),
    "cron": '[schedule]\ncron = "61 25 * * *"\n',
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_reports_bad_configs_without_a_traceback(name, tmp_path, cli):
    path = tmp_path / "config.toml"
    path.write_text(CLI_CASES[name])
    proc = cli("validate-config", str(path), cwd=tmp_path, timeout=60)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    if proc.returncode == 0:
        return  # a value the schema accepts as written
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert str(path) in proc.stderr or "config.toml" in proc.stderr


def _float_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[list[str], str]]:
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _float_fields(ann, f"{prefix}{name}.")
        elif ann is float:
            out.append((f"{prefix}{name}".split("."), f"{prefix}{name}"))
    return out


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_for_every_float_setting(bad):
    # Unbounded fields would take infinity (int(inf) fails much later, in the daemon); a NaN slips past bounds.
    fields = _float_fields(Config)
    assert len(fields) > 20
    for path, dotted in fields:
        raw: dict[str, Any] = {}
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = bad
        with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
            parse_config(raw, env=False)


def test_the_shipped_config_loads(tmp_path):
    shipped = Path(__file__).resolve().parents[3] / "config.toml"
    (tmp_path / "config.toml").write_text(shipped.read_text())
    load_config(tmp_path / "config.toml", env=False)
