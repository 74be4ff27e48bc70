"""The frontier curriculum: advance on the yield the label source produces, hold when it is too low.

Pure. Yield is the share of a round's frontier candidates whose labels were kept; it is what the filters let through,
so it needs no answer key. Levels below the frontier are kept by replay, never solved again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Frontier:
    level: int
    holds: int = 0  # rounds in a row that stayed at this level
    saturated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step(
    state: Frontier, yield_: float, *, advance_yield: float, max_level: int, max_holds: int, fixed: bool = False
) -> tuple[Frontier, str]:
    """The next frontier and why: +1 when the yield clears ``advance_yield`` (or every round when ``fixed``)."""
    if state.level >= max_level:
        return Frontier(state.level, state.holds + 1, state.saturated), f"at max_level {max_level}"
    if fixed or yield_ >= advance_yield:
        why = "fixed schedule" if fixed else f"yield {yield_:.2f} >= {advance_yield}"
        return Frontier(state.level + 1), f"level {state.level}: {why}: advance to {state.level + 1}"
    holds = state.holds + 1
    saturated = holds >= max_holds
    why = f"level {state.level}: yield {yield_:.2f} < {advance_yield}: hold ({holds} in a row)"
    return Frontier(state.level, holds, saturated), why + (": saturated" if saturated else "")
