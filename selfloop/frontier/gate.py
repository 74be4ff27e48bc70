"""Promotion of a frontier round: a paired decision on the gate problems, never on a difference inside the noise.

Pure. The challenger must be non-inferior on the levels the champion masters (the lower 95 % bound of the paired
difference above ``-margin``) and better at the round's level (exact one-sided McNemar below ``alpha``), which is
the round's purpose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from selfloop.frontier.stats import paired


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    champion: Mapping[int, Sequence[bool]],
    challenger: Mapping[int, Sequence[bool]],
    level: int,
    *,
    mastery: float,
    margin: float,
    alpha: float,
) -> Decision:
    """``champion``/``challenger``: per level, outcomes on the same gate problems; ``level``: the round's level."""
    mastered = [lv for lv in sorted(champion) if lv < level and sum(champion[lv]) >= mastery * len(champion[lv])]
    figures: dict[str, Any] = {"mastered_levels": mastered}
    if mastered:
        kept = paired([x for lv in mastered for x in champion[lv]], [x for lv in mastered for x in challenger[lv]])
        figures["mastered"] = kept.to_dict()
        if kept.low < -margin:
            return Decision(
                False,
                f"mastered levels {mastered[0]}..{mastered[-1]}: {kept.diff:+.3f} "
                f"[{kept.low:+.3f}, {kept.high:+.3f}], lower bound below -{margin}",
                figures,
            )
    if level not in champion:
        return Decision(False, f"no gate problems at level {level}", figures)
    gain = paired(champion[level], challenger[level])
    figures["frontier"] = gain.to_dict()
    summary = f"level {level}: {gain.a:.3f} -> {gain.b:.3f}, {gain.diff:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]"
    if gain.p_better >= alpha:
        return Decision(False, f"{summary}: not better beyond noise (McNemar p = {gain.p_better:.3g})", figures)
    return Decision(True, f"{summary}, McNemar p = {gain.p_better:.3g}", figures)
