"""The daemon's in-memory champion, swapped when the ``current`` pointer moves.

``ModelHolder.acquire()`` hands out the (model, tokenizer) pair current at that
moment; ``reload_if_changed()`` loads the new champion *outside* the lock and
then swaps one reference, so work in flight keeps the pair it acquired (Python
keeps it alive until released) and new work gets the new one. Nothing waits
for a load except the caller of ``reload_if_changed``.

Does not cover: deciding what is current (``selfloop.model.registry``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfloop.errors import SelfloopError
from selfloop.model.registry import Registry


@dataclass(frozen=True)
class Loaded:
    generation: int
    model: Any
    tokenizer: Any


class ModelHolder:
    """Holds the loaded champion of ``registry``; ``loader(path) -> (model, tokenizer)``."""

    def __init__(self, registry: Registry, loader: Callable[[Path], tuple[Any, Any]]):
        self.registry = registry
        self.loader = loader
        self._lock = threading.Lock()  # guards the reference swap only (short)
        self._reload_lock = threading.Lock()  # one load at a time
        self._loaded: Loaded | None = None

    @property
    def generation(self) -> int | None:
        loaded = self._loaded
        return None if loaded is None else loaded.generation

    def reload_if_changed(self) -> bool:
        """Load the champion if ``current`` names a different generation; True if it swapped."""
        with self._reload_lock:
            target = self.registry.current()
            if target is None or target == self.generation:
                return False
            model, tokenizer = self.loader(self.registry.path(target))
            model.eval()
            with self._lock:
                self._loaded = Loaded(target, model, tokenizer)
            return True

    @contextmanager
    def acquire(self) -> Iterator[Loaded]:
        """The current pair for the duration of a piece of work (loads it on first use)."""
        with self._lock:
            loaded = self._loaded
        if loaded is None:
            self.reload_if_changed()
            with self._lock:
                loaded = self._loaded
            if loaded is None:
                raise SelfloopError(f"no current model in {self.registry.dir} yet")
        yield loaded
