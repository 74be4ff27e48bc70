"""One improvement cycle as a resumable state machine over named phases (``selfloop.loop.phases``).

Each phase is recorded in the ``cycles`` row before (``running``) and after it runs (``done``, with its output, which
later phases read back). A ``running`` or ``interrupted`` cycle resumes at its first phase not done (training from
its checkpoint and snapshot); a ``failed`` one is not retried.

Does not cover: what the phases do (``selfloop.loop.phases``), scheduling and watching (``selfloop.loop.daemon``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfloop.config import Config, ProjectPaths
from selfloop.errors import SelfloopError
from selfloop.loop.phases import PHASES, Phase
from selfloop.model.factory import load_pretrained, resolve_device, resolve_dtype
from selfloop.model.holder import ModelHolder
from selfloop.model.registry import Registry, gen_name
from selfloop.sandbox import Sandbox
from selfloop.store import Store
from selfloop.store.runs import last_generation_used, open_cycle, save_cycle, start_cycle
from selfloop.train.launch import TrainingInterrupted
from selfloop.train.rundir import RunDir

Log = Callable[[str], None]


class CycleInterrupted(SelfloopError):
    """The cycle stopped at a phase boundary because a stop was requested; it resumes next time."""


@dataclass
class CycleContext:
    cfg: Config
    paths: ProjectPaths
    store: Store
    config_path: Path
    registry: Registry
    cycle_id: int
    generation: int  # the challenger this cycle trains
    detail: dict[str, Any]
    task_suite: Callable[[Any, Any], dict[str, float]] | None = None
    log: Log = field(default=lambda msg: None)
    should_stop: Callable[[], bool] = field(default=lambda: False)
    # The daemon's long-lived champion (hot-reloaded after a promotion) and warm
    # sandbox; `selfloop cycle --once` gets fresh ones for the cycle.
    holder: ModelHolder | None = None
    sandbox: Any = None
    _own_holder: ModelHolder | None = field(default=None, repr=False)

    def model_source(self) -> AbstractContextManager[Any]:
        """The champion for a piece of work (``Loaded``: generation, model, tokenizer)."""
        if self.holder is not None:
            return self.holder.acquire()
        if self._own_holder is None:
            device = resolve_device(self.cfg.model)
            dtype = resolve_dtype(self.cfg.model, device)
            self._own_holder = ModelHolder(
                self.registry, lambda path: load_pretrained(path, device=device, dtype=dtype)
            )
        return self._own_holder.acquire()

    @contextmanager
    def sandbox_source(self) -> Iterator[Any]:
        """The sandbox judges run code in: the daemon's warm one, or one for this phase."""
        if self.sandbox is not None:
            yield self.sandbox
            return

        with Sandbox(self.cfg.sandbox) as sandbox:
            yield sandbox

    def output(self, phase: str) -> dict[str, Any]:
        """What an earlier phase of this cycle returned, as stored (``selfloop.loop.phases`` parses it)."""
        return self.detail["phases"][phase]["out"]

    @property
    def run(self) -> RunDir:
        """This cycle's run dir (a recipe search trains in its ``recipe-K``)."""
        return RunDir(self.paths.runs / gen_name(self.generation))


# --------------------------------------------------------------------------- driver


def run_cycle(
    cfg: Config,
    paths: ProjectPaths,
    store: Store,
    *,
    config_path: Path,
    phases: list[tuple[str, Phase]] | None = None,
    task_suite: Callable[[Any, Any], dict[str, float]] | None = None,
    log: Log = lambda msg: None,
    should_stop: Callable[[], bool] = lambda: False,
    holder: ModelHolder | None = None,
    sandbox: Any = None,
) -> dict[str, Any]:
    """Run (or resume) one cycle to the end and return its ``detail`` (phase outputs).

    ``config_path`` is where ``cfg`` was read from; each training run records it.

    ``should_stop`` is polled at every phase boundary and during training; when
    it turns true the cycle is recorded ``interrupted`` and ``CycleInterrupted``
    (or ``TrainingInterrupted``) is raised; the next call resumes it.

    A cycle left ``running`` (a crash, kill -9) or ``interrupted`` (SIGTERM, Ctrl-C) is
    resumed at its first phase that is not done; the train phase then resumes from its
    Trainer checkpoint and its data snapshot, so nothing restarts from zero. A ``failed``
    cycle is not retried: the next call starts a fresh cycle.
    """
    phases = PHASES if phases is None else phases
    registry = Registry(paths.models, store)
    registry.clean_temp()
    cycle_id, generation, detail = _resume_or_start(store, registry, paths)
    ctx = CycleContext(
        cfg,
        paths,
        store,
        Path(config_path),
        registry,
        cycle_id,
        generation,
        detail,
        task_suite,
        log,
        should_stop,
        holder,
        sandbox,
    )
    for name, func in phases:
        if detail["phases"].get(name, {}).get("status") == "done":
            continue
        if should_stop():
            save_cycle(store, cycle_id, name, "interrupted", detail, error="stop requested")
            raise CycleInterrupted(f"cycle {cycle_id} stopped before {name}; it resumes there next time")
        detail["phases"][name] = {"status": "running", "started": time.time()}
        save_cycle(store, cycle_id, name, "running", detail)
        try:
            out = func(ctx)
            if not isinstance(out, dict):
                out = out.to_json()
        except (TrainingInterrupted, KeyboardInterrupt) as e:
            detail["phases"][name]["status"] = "interrupted"
            save_cycle(store, cycle_id, name, "interrupted", detail, error=str(e) or type(e).__name__)
            raise
        except BaseException as e:
            detail["phases"][name]["status"] = "failed"
            save_cycle(store, cycle_id, name, "failed", detail, error=f"{type(e).__name__}: {e}", finished=True)
            store.event("cycle", f"cycle {cycle_id} failed in {name}: {e}", cycle=cycle_id, phase=name)
            raise
        detail["phases"][name] = {**detail["phases"][name], "status": "done", "finished": time.time(), "out": out}
        save_cycle(store, cycle_id, name, "running", detail)
    save_cycle(store, cycle_id, "done", "done", detail, finished=True)
    store.event("cycle", f"cycle {cycle_id} done (generation {generation})", cycle=cycle_id, generation=generation)
    return detail


def _resume_or_start(store: Store, registry: Registry, paths: ProjectPaths) -> tuple[int, int, dict[str, Any]]:
    cycle = open_cycle(store)
    if cycle is not None:
        cycle.detail.setdefault("phases", {})
        store.event("cycle", f"resuming cycle {cycle.id}", cycle=cycle.id)
        return cycle.id, cycle.generation, cycle.detail
    used = [last_generation_used(store), *registry.on_disk()]
    generation = max((u for u in used if u is not None), default=-1) + 1
    if paths.runs.is_dir():  # run dirs of failed cycles are never resumed
        for stale in paths.runs.iterdir():
            shutil.rmtree(stale, ignore_errors=True)
    detail: dict[str, Any] = {"phases": {}}
    cycle_id = start_cycle(store, generation, detail)
    store.event("cycle", f"cycle {cycle_id} started (generation {generation})", cycle=cycle_id, generation=generation)
    return cycle_id, generation, detail
