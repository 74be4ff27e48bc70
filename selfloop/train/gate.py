"""The promotion gate: a pure decision from two models' paired figures and ``GateConfig``.

Champion and challenger answer the same held-out questions and score the same held-out examples, so the gate compares
them pair by pair and acts only on differences beyond noise: exact McNemar and a paired interval on per-question task
outcomes of the gate split (``selfloop.frontier.stats``), a paired bootstrap over examples for the text/chat loss.
Rule in ``decide``.

Does not cover: computing the figures (``selfloop.train.evaluate``, ``selfloop.train.suite``) or acting on the
decision (``selfloop.model.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from selfloop.config import GateConfig
from selfloop.frontier.stats import Paired, paired

LOSS_KINDS = ("text", "chat")  # the guard's held-out examples: documents that are not tasks


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Interval:
    """The challenger's relative loss change against the champion (new / old - 1) and its 95 % interval."""

    change: float
    low: float
    high: float
    n: int  # examples

    def __str__(self) -> str:
        return f"{self.change:+.2%} [{self.low:+.2%}, {self.high:+.2%}]"


def loss_change(old_sums: Sequence[float], new_sums: Sequence[float], *, resamples: int, seed: int) -> Interval:
    """The relative change of the token-weighted loss over the same examples, with the percentile interval of a
    paired bootstrap over examples (seeded: the same figures give the same interval).

    Both models tokenize alike, so each example has the same token count for both and the ratio of summed losses
    is the ratio of per-token losses.
    """
    import numpy as np
    from scipy.stats import bootstrap

    old, new = np.asarray(old_sums, dtype=float), np.asarray(new_sums, dtype=float)

    def ratio(o, n, axis=-1):
        return n.sum(axis=axis) / o.sum(axis=axis) - 1

    ci = bootstrap(
        (old, new),
        ratio,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return Interval(float(ratio(old, new)), float(ci.low), float(ci.high), len(old))


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` without samples and the per-example / per-question tables (for manifests and logs)."""
    out = {k: v for k, v in figures.items() if k not in ("samples", "guard", "gate")}
    if "gate" in figures:
        out["gate_tasks"] = figures["gate"].get("tasks", {})
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _bools(outcomes: str) -> list[bool]:
    return [c == "1" for c in outcomes]


def _pass(outcomes: str) -> float:
    return outcomes.count("1") / len(outcomes) if outcomes else 0.0


def _span(levels: list[str]) -> str:
    if len(levels) == 1:
        return f"level {levels[0]}"
    contiguous = [int(lv) for lv in levels] == list(range(int(levels[0]), int(levels[-1]) + 1))
    return f"levels {levels[0]}-{levels[-1]}" if contiguous else "levels " + ", ".join(levels)


def _paired_text(p: Paired) -> str:
    return f"{p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}] (n={p.n}, {p.b_only} gained, {p.a_only} lost)"


def decide(
    challenger: dict[str, Any], champion: dict[str, Any] | None, cfg: GateConfig, *, mastered: float = 0.9
) -> Decision:
    """Decide on figures from ``selfloop.train.evaluate``: ``guard`` (per-example loss sums and token counts per
    kind) and ``gate`` (``TaskSuite.table`` of the gate split: per-question outcomes per family and level).

    The challenger is rejected when

    - a held-out text or chat loss (non-task documents) is worse beyond noise: the whole 95 % paired-bootstrap
      interval of its relative change is above ``loss_tolerance``;
    - a task family regresses at its mastered levels (champion pass@1 there >= ``mastered``, the curriculum's
      ``tasks.advance_threshold``): the lower bound of the 95 % interval of challenger - champion pass@1 is below
      ``-noninferiority_margin``.

    Otherwise it is promoted when a figure is better beyond noise:

    - task projects (both models solve at least one gate question): pass@1 decides. A family is better when, at its
      frontier (the levels it has not mastered; all levels once every one is), the one-sided exact McNemar p-value
      is below ``alpha`` divided by the number of families and the difference is at least ``min_improvement``.
      A loss gain alone does not promote.
    - otherwise (no task figures, or both models at the floor, every gate question wrong): the loss decides. A kind
      is better when the whole interval of its relative change is below ``-min_improvement``.

    A challenger whose figures all stay inside the noise is rejected ("no figure improved beyond noise"): promoting
    it would move the champion on a coin flip. Figures one side lacks, or tables over different questions or
    examples (another tokenizer), are not compared. Generation 0 (no champion) is promoted if it trained and loads
    (and its loss, if there is held-out data yet, is finite).
    """
    figures: dict[str, Any] = {"challenger": headline(challenger), "champion": headline(champion) if champion else None}
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

    compared: list[dict[str, Any]] = []
    figures["compared"] = compared
    worse: list[str] = []
    loss_better: list[str] = []
    inside: list[str] = []  # losses compared and within the noise, for the reason
    for kind in LOSS_KINDS:
        new, old = (challenger.get("guard") or {}).get(kind), (champion.get("guard") or {}).get(kind)
        if not (new and old) or new["tokens"] != old["tokens"] or len(new["sums"]) < 2:
            continue
        iv = loss_change(old["sums"], new["sums"], resamples=cfg.bootstrap_samples, seed=cfg.seed)
        compared.append({"figure": f"{kind} loss", **{k: round(v, 5) for k, v in asdict(iv).items()}})
        if iv.low > cfg.loss_tolerance:
            worse.append(f"{kind} loss regressed: {iv} relative, above {cfg.loss_tolerance:+.2%} (n={iv.n})")
        elif iv.high < -cfg.min_improvement:
            loss_better.append(f"{kind} loss {iv} (n={iv.n})")
        else:
            inside.append(f"{kind} loss {iv}")

    new_gate, old_gate = challenger.get("gate") or {}, champion.get("gate") or {}
    tables = new_gate.get("items") is not None and new_gate.get("items") == old_gate.get("items")
    new_out: dict[str, dict[str, str]] = new_gate.get("outcomes", {}) if tables else {}
    old_out: dict[str, dict[str, str]] = old_gate.get("outcomes", {}) if tables else {}
    solved = any("1" in s for table in (new_out, old_out) for levels in table.values() for s in levels.values())
    task_better: list[str] = []
    task_inside: list[str] = []
    families = sorted(f for f in old_out if old_out[f])
    for family in families:
        levels = sorted(old_out[family], key=int)
        top = [lv for lv in levels if _pass(old_out[family][lv]) >= mastered]
        frontier = [lv for lv in levels if lv not in top] or levels

        def table(lvs: list[str], fam: str = family) -> Paired:
            return paired(
                _bools("".join(old_out[fam][lv] for lv in lvs)), _bools("".join(new_out[fam][lv] for lv in lvs))
            )

        if top:
            p = table(top)
            compared.append({"figure": f"{family} pass@1 at mastered {_span(top)}", **p.to_dict()})
            if p.low < -cfg.noninferiority_margin:
                worse.append(
                    f"{family} pass@1 at mastered levels: {p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}] "
                    f"below -{cfg.noninferiority_margin} ({_span(top)}, n={p.n})"
                )
        if not solved:
            continue
        p = table(frontier)
        level = cfg.alpha / len(families)
        compared.append({"figure": f"{family} pass@1 at the frontier {_span(frontier)}", **p.to_dict()})
        text = f"{family} pass@1 at {_span(frontier)}: {_paired_text(p)}, McNemar p={p.p_better:.3g}"
        if p.p_better < level and p.diff >= cfg.min_improvement:
            task_better.append(f"{text} < {level:.3g}")
        else:
            task_inside.append(
                f"{text} >= {level:.3g}" if p.p_better >= level else f"{text}, below {cfg.min_improvement}"
            )

    if worse:
        return Decision(False, "; ".join(worse), figures)
    if solved:  # a task project: pass@1 decides, the loss only guards
        if task_better:
            return Decision(True, "improved beyond noise: " + "; ".join(task_better), figures)
        extra = f" (a loss gain does not promote a task project: {'; '.join(loss_better)})" if loss_better else ""
        return Decision(False, "no task figure improved beyond noise: " + "; ".join(task_inside) + extra, figures)
    if loss_better:
        floor = " (every gate question wrong for both models: the loss decides)" if families else ""
        return Decision(True, "improved beyond noise: " + "; ".join(loss_better) + floor, figures)
    if not compared:
        return Decision(False, "no figure improved beyond noise: no paired figures to compare", figures)
    return Decision(False, "no figure improved beyond noise: " + "; ".join(inside), figures)
