import json
import subprocess
import sys
from pathlib import Path

import pytest

import selfloop
from selfloop.cli.project import init_project, starter_corpus, starter_root


def test_help_and_version(cli):
    r = cli("--help")
    assert r.returncode == 0
    for command in (
        "init",
        "ingest",
        "status",
        "run",
        "cycle",
        "models",
        "rollback",
        "generate",
        "sandbox",
        "judge",
        "dashboard",
        "validate-config",
    ):
        assert command in r.stdout
    assert cli("--version").stdout.startswith("selfloop ")


def test_light_commands_do_not_import_torch():
    # --help, status and validate-config must answer instantly: no torch/transformers at import.
    code = (
        "import sys, selfloop.cli, selfloop.cli.project, selfloop.config, selfloop.store;"
        "selfloop.cli.build_parser();"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_light_packages_do_not_import_torch():
    # The parser, its light commands and the packages below them never import torch/transformers.
    code = (
        "import sys, selfloop.cli, selfloop.cli.project, selfloop.cli.sandbox, selfloop.cli.ingest,"
        " selfloop.cli.models, selfloop.cli.judge, selfloop.store, selfloop.corpus, selfloop.ingest, selfloop.sandbox;"
        # judge check/eval with the n-gram reference: the judges and the datatrove rules load without torch
        "from selfloop.judge import registry; registry.factory('a_vs_b'); registry.factory('doc_quality');"
        "from selfloop.judge.doc_rules import rule; rule('c4_sentences')('One two three. Four five six.');"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_usage_error_exit_code(cli):
    assert cli("no-such-command").returncode == 2
    assert cli("cycle").returncode == 2  # --once is required


def test_init_creates_layout_and_refuses_overwrite(tmp_path, cli):
    r = cli("init", str(tmp_path / "proj"))
    assert r.returncode == 0, r.stderr
    proj = tmp_path / "proj"
    assert (proj / "config.toml").read_text() == (starter_root() / "config.toml").read_text()
    shipped = sorted(
        p.relative_to(starter_corpus() / "orig") for p in (starter_corpus() / "orig").rglob("*") if p.is_file()
    )
    copied = sorted(
        p.relative_to(proj / "corpus" / "orig") for p in (proj / "corpus" / "orig").rglob("*") if p.is_file()
    )
    assert copied == shipped
    assert (proj / "corpus" / "rework").is_dir()
    assert (proj / ".selfloop" / "state.db").is_file()
    before = (proj / "config.toml").read_bytes()
    r = cli("init", str(proj))
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert (proj / "config.toml").read_bytes() == before


def test_the_starter_corpus_is_package_data_and_the_checkouts_copy_is_identical():
    package = Path(selfloop.__file__).parent
    corpus = starter_corpus()
    assert corpus.is_relative_to(package)  # init copies package data, never the checkout's live corpus/orig
    packaged = {
        p.relative_to(corpus).as_posix(): p.read_bytes()
        for p in corpus.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "orig/tasks/starter.jsonl" in packaged and "README-LICENSES.md" in packaged
    # The checkout's corpus/ (what `make run` ingests) holds the same files: those git tracks, since a
    # user's own files in corpus/orig are theirs.
    repo = package.parent
    git = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "corpus/orig", "corpus/README-LICENSES.md", "corpus/PSF-LICENSE.txt"],
        capture_output=True,
        text=True,
    )
    if git.returncode != 0 or not git.stdout.strip():
        pytest.skip("not a git checkout")
    tracked = {name.removeprefix("corpus/"): (repo / name).read_bytes() for name in git.stdout.split()}
    assert tracked.keys() == packaged.keys()
    assert [k for k in tracked if tracked[k] != packaged[k]] == []


def test_init_empty(tmp_path):
    init_project(tmp_path, starter=False)
    assert list((tmp_path / "corpus" / "orig").iterdir()) == []


def test_status_on_fresh_project(tmp_path, cli):
    init_project(tmp_path, starter=False)
    r = cli("status", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["daemon"]["running"] is False
    assert status["documents"] == [] and status["generations"] == [] and status["last_cycle"] is None
    r = cli("status", cwd=tmp_path)
    assert r.returncode == 0 and "not running" in r.stdout


def test_status_without_config_is_a_clear_error(tmp_path, cli):
    r = cli("status", cwd=tmp_path)
    assert r.returncode == 2
    assert "no such config file" in r.stderr and "Traceback" not in r.stderr


def test_models_lists_frontier_generations_with_their_audited_labels(tmp_path, cli):
    from selfloop.store import Store
    from selfloop.store.frontier import record_step
    from selfloop.testing import make_project, tiny_config

    _, _, paths = make_project(tmp_path, tiny_config())
    with Store.open(paths.db) as store:
        labels = {"source": "self", "kept": 250, "yield": 0.4, "audited_label_accuracy": 0.996}
        record_step(
            store,
            {
                "family": "addition",
                "kind": "round",
                "round": 1,
                "level": 5,
                "generation": 1,
                "promoted": True,
                "reason": "level 5 better",
                "labels": labels,
                "accuracy_by_level": {"5": 0.9},
                "frontier": {"level": 6},
            },
        )
    r = cli("models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "frontier: addition" in r.stdout and "self 250" in r.stdout and "1.00" in r.stdout


def test_global_options_before_or_after_the_command(tmp_path, cli):
    init_project(tmp_path / "proj", starter=False)
    config = str(tmp_path / "proj" / "config.toml")
    for args in (
        ("-c", config, "status", "--json"),
        ("status", "--json", "-c", config),
        ("--debug", "status", "-c", config, "--json"),
        ("-c", config, "status", "--debug", "--json"),
        ("-c", config, "validate-config"),
    ):
        r = cli(*args, cwd=tmp_path)  # no config.toml in cwd: -c is what names it
        assert r.returncode == 0, (args, r.stderr)
    # --debug after the command shows the traceback of a config error; without it, one line.
    missing = str(tmp_path / "missing.toml")
    r = cli("status", "-c", missing, "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = cli("--debug", "sandbox", "info", "-c", missing, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = cli("status", "-c", missing, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    # `selfloop status | head -1`: the reader is gone before the command writes.
    init_project(tmp_path, starter=False)
    p = subprocess.Popen(
        [sys.executable, "-m", "selfloop", "status"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0 and err == "", err


def test_validate_config_imports_the_frontier_families(tmp_path, cli):
    init_project(tmp_path, starter=False)
    config = tmp_path / "config.toml"
    config.write_text(
        config.read_text().replace('families = [\n    "addition",\n]', 'families = ["no_such_plugin:Family"]', 1)
    )
    r = cli("validate-config", str(config), cwd=tmp_path)
    assert r.returncode == 2 and 'frontier family "no_such_plugin:Family": cannot import it' in r.stderr


def test_validate_config_says_which_families_get_no_tool_labels(tmp_path, cli, monkeypatch):
    init_project(tmp_path, starter=False)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "helpers"))
    config = tmp_path / "config.toml"
    text = config.read_text()
    plugin = text.replace('families = [\n    "addition",\n]', 'families = ["addition", "frontier_plugin:Copy"]', 1)
    config.write_text(plugin.replace("[frontier.family_sources]\n", '[frontier.family_sources]\nreverse = ["self"]\n'))
    r = cli("validate-config", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "frontier family copy: no tool labels: it writes no programs" in r.stderr
    assert "frontier.family_sources.reverse: no family of that name" in r.stderr
    assert "addition" not in r.stderr  # it writes programs: nothing to say
    config.write_text(plugin.replace("[frontier.family_sources]\n", '[frontier.family_sources]\ncopy = ["tool"]\n'))
    r = cli("validate-config", str(config), cwd=tmp_path)
    assert r.returncode == 2 and "tool is its only label source" in r.stderr


def test_validate_config_checks_that_model_base_exists_and_loads(tmp_path, cli):
    from tiny_models import tiny_llama_dir

    init_project(tmp_path, starter=False)
    config = tmp_path / "config.toml"
    shipped = config.read_text()
    config.write_text(shipped.replace('base = "scratch"', 'base = "./models/nowhere"', 1))
    r = cli("validate-config", str(config), cwd=tmp_path)
    assert r.returncode == 2 and "models/nowhere does not exist" in r.stderr, r.stderr
    tiny_llama_dir(tmp_path / "models" / "tiny")
    config.write_text(shipped.replace('base = "scratch"', 'base = "models/tiny"', 1))
    r = cli("validate-config", str(config), cwd=tmp_path)
    assert r.returncode == 0 and "model.base: dir" in r.stdout and "LlamaForCausalLM" in r.stdout, r.stderr
