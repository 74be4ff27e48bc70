"""The promotion gate: a pure decision from two sets of figures and ``GateConfig``.

A challenger replaces the champion only if no held-out loss or task pass@1 gets worse beyond its tolerance and at
least one figure improves by ``min_improvement`` (rule in ``decide``).

Does not cover: computing the figures (``selfloop.train.evaluate``) or acting on the decision
(``selfloop.model.registry``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from selfloop.config import GateConfig

LOSS_KEYS = ("loss", "text_loss", "chat_loss")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, cfg: GateConfig) -> Decision:
    """Decide on figures shaped like ``{"loss", "text_loss", "chat_loss", "tasks": {family: pass@1}}``.

    A challenger replaces the champion only if

    - no held-out loss (overall, text, chat: each one both models have) is worse than
      the champion's by more than ``loss_tolerance`` (relative),
    - no task family's pass@1 drops by more than ``task_tolerance`` (absolute),
    - and at least one figure improves by at least ``min_improvement`` (relative for
      losses, absolute for pass@1).

    Generation 0 (no champion) is promoted if it trained and loads (and its loss, if
    there is held-out data yet, is finite).
    """
    figures: dict[str, Any] = {"challenger": challenger, "champion": champion}
    loss = challenger.get("loss")
    if challenger.get("error"):
        return Decision(False, f"challenger does not load: {challenger['error']}", figures)
    if champion is None:
        # Generation 0 has nothing to beat: it must load and must not have diverged.
        if loss is not None and not _finite(loss):
            return Decision(False, f"generation 0 diverged (held-out loss {loss})", figures)
        return Decision(
            True, "generation 0: trained and loads" + ("" if loss is not None else " (no held-out data yet)"), figures
        )
    if not _finite(loss):
        return Decision(False, f"challenger has no finite held-out loss ({loss}) to compare", figures)

    improvements: list[str] = []
    for key in LOSS_KEYS:
        new, old = challenger.get(key), champion.get(key)
        if not (_finite(new) and _finite(old)):
            continue
        if new > old * (1 + cfg.loss_tolerance):
            return Decision(
                False, f"{key} regressed: {new:.4f} > champion {old:.4f} * (1 + {cfg.loss_tolerance})", figures
            )
        gain = (old - new) / old if old > 0 else 0.0
        if gain >= cfg.min_improvement and gain > 0:
            improvements.append(f"{key} {old:.4f} -> {new:.4f} (-{gain:.2%})")

    new_tasks, old_tasks = challenger.get("tasks") or {}, champion.get("tasks") or {}
    for family in sorted(old_tasks):
        old = old_tasks[family]
        new = new_tasks.get(family, 0.0)
        if new < old - cfg.task_tolerance:
            return Decision(
                False, f"task {family} pass@1 dropped: {new:.3f} < {old:.3f} - {cfg.task_tolerance}", figures
            )
    for family in sorted(new_tasks):
        gain = new_tasks[family] - old_tasks.get(family, 0.0)
        if gain >= cfg.min_improvement and gain > 0:
            improvements.append(f"task {family} pass@1 +{gain:.3f}")

    if not improvements:
        return Decision(False, f"no figure improved by at least {cfg.min_improvement}", figures)
    return Decision(True, "improved: " + "; ".join(improvements), figures)
