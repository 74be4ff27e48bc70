"""Judge names -> factories: built-in judges, judges registered in code, and entry points in the group
``selfloop.judges``.

A third-party package adds a judge (e.g. a scripted simulated environment) in its pyproject.toml::

    [project.entry-points."selfloop.judges"]
    my_env = "my_pkg.judges:MyEnvJudge"

where ``MyEnvJudge(context)`` builds a `selfloop.judge.base.Judge`. Names in ``[judge]`` config lists resolve here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from selfloop.errors import ConfigError
from selfloop.judge.base import Judge, JudgeContext

Factory = Callable[[JudgeContext], Judge]
GROUP = "selfloop.judges"

# Built-ins, imported only when used ("module:attribute").
BUILTIN: dict[str, str] = {
    "python": "selfloop.judge.python_judge:PythonJudge",
    "task": "selfloop.judge.task_judge:TaskJudge",
    "text_quality": "selfloop.judge.text_judges:TextQualityJudge",
    "doc_quality": "selfloop.judge.text_judges:DocQualityJudge",
    "a_vs_b": "selfloop.judge.text_judges:ABJudge",
    "pairwise": "selfloop.judge.pairwise:PairwiseJudge",
}

_registered: dict[str, Factory] = {}
_lock = threading.Lock()


def register(name: str, factory: Factory) -> None:
    """Register a judge factory under `name` (overrides a built-in or entry point of that name)."""
    with _lock:
        _registered[name] = factory


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    return sorted(set(BUILTIN) | set(_registered) | set(_entry_points()))


def factory(name: str) -> Factory:
    """The factory for `name`; ConfigError naming the known judges when there is none."""
    with _lock:
        if name in _registered:
            return _registered[name]
    eps = _entry_points()
    try:
        if name in eps:
            return eps[name].load()  # type: ignore[attr-defined]
        if name in BUILTIN:
            module, attr = BUILTIN[name].split(":")
            return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"judge {name!r} cannot be loaded: {e}") from None
    raise ConfigError(
        f"unknown judge {name!r}; known: {', '.join(available())} "
        f"(third-party judges register under the entry point group {GROUP!r})"
    )


def create(name: str, context: JudgeContext) -> Judge:
    judge = factory(name)(context)
    if not isinstance(judge, Judge):
        raise ConfigError(f"judge {name!r} did not build a selfloop Judge (got {type(judge).__name__})")
    return judge
