"""Paired statistics for comparing two models on the same questions.

Per-question outcomes make small differences visible honestly: McNemar's exact test looks only at the questions the
two models answer differently. Pure; scipy supplies the distributions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Paired:
    """B against A on the same n questions: accuracy difference B - A, its 95 % interval, and the exact one-sided
    McNemar p-value that B is better."""

    n: int
    a: float
    b: float
    diff: float
    low: float
    high: float
    b_only: int  # questions only B gets right
    a_only: int
    p_better: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def paired(a: Sequence[bool], b: Sequence[bool]) -> Paired:
    """Compare per-question outcomes ``b`` with ``a`` (same questions, same order).

    The interval is the Wald interval of a paired difference (Agresti, *Categorical Data Analysis*, 10.1); with no
    discordant questions it is the single point 0 -- such a table carries no evidence either way.
    """
    from scipy.stats import binomtest

    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes need the same non-zero length ({len(a)} vs {len(b)})")
    n = len(a)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    diff = (b_only - a_only) / n
    se = math.sqrt(max(0.0, (b_only + a_only) / n - diff**2) / n)
    discordant = b_only + a_only
    p = binomtest(b_only, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
    return Paired(n, sum(a) / n, sum(b) / n, diff, diff - Z95 * se, diff + Z95 * se, b_only, a_only, p)


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95 % t-interval of per-seed figures (one value: the interval is that value)."""
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": round(mean, 4), "low": round(mean, 4), "high": round(mean, 4)}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4)}
