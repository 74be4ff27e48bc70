"""The tiny config and the throwaway projects that the tests and the benchmarks share.

Not used by the daemon. Imports no torch: a project is files on disk, not a model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import tomli_w

from selfloop.cli.project import starter_corpus, starter_root
from selfloop.config import Config, ProjectPaths, load_config

# 2 layers x 32 wide, so a model trains in seconds on a CPU.
TINY_MODEL: dict[str, Any] = {"vocab_size": 320, "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64}

TINY: dict[str, Any] = {
    "model": {**TINY_MODEL, "keep_generations": 3},
    "train": {
        "gen0_steps": 16,
        "max_steps": 8,
        "batch_size": 8,
        "block_size": 32,
        "save_steps": 4,
        "log_steps": 2,
        "eval_batches": 2,
        "eval_samples": 2,
        "eval_sample_tokens": 8,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.0,
    },
    "rework": {"enabled": False},
    "frontier": {"enabled": False},
}

# A frontier model that trains in seconds: the mechanics run, the accuracy means nothing.
TINY_FRONTIER: dict[str, Any] = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 16,
    "batch_size": 16,
    "gen0_steps": 20,
    "gen0_warmup": 2,
    "round_steps": 6,
    "round_warmup": 1,
    "candidates_chunk": 24,
    "candidates_max": 48,
    "min_kept": 8,
    "test_per_level": 12,
    "gate_per_level": 12,
    "labelled_max": 2,
    "max_level": 5,
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, table by table; neither is changed."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def tiny_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tiny config as config.toml holds it, with ``overrides`` (a partial config) merged in."""
    return merge(TINY, overrides or {})


def make_project(
    root: Path, config: dict[str, Any] | None = None, *, starter: bool | Path = False
) -> tuple[Path, Config, ProjectPaths]:
    """A project in ``root``: ``config`` as its config.toml (None: the shipped one), orig/ and rework/.

    ``starter=True`` fills orig/ with the shipped starter corpus; a folder is copied into orig/ under
    its own name. No state dir yet: the first command that opens the store makes it.
    """
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.toml"
    if config is None:
        shutil.copyfile(starter_root() / "config.toml", config_path)
    else:
        config_path.write_text(tomli_w.dumps(config))
    cfg, paths = load_config(config_path, env=False)
    if starter is True:
        shutil.copytree(starter_corpus() / "orig", paths.orig, dirs_exist_ok=True)
    elif starter:
        shutil.copytree(starter, paths.orig / starter.name, dirs_exist_ok=True)
    paths.orig.mkdir(parents=True, exist_ok=True)
    paths.rework.mkdir(parents=True, exist_ok=True)
    return config_path, cfg, paths
