"""What a round trains on: the newest round's labels, older rounds, and fresh problems from the labelled range.

Pure. The newest round gets ``new_share`` of the draws (less while it holds fewer than ``min_kept`` labels, so a
tiny round is not repeated hundreds of times); older rounds pooled and fresh generator-labelled problems split the
rest. With no rounds (the ``control`` arm) every draw is fresh, so an arm differs from the control only in the
labelled slot.

A model that also writes programs (the ``tool`` source) trains on two mixtures of the same shape, answers and
programs; ``program=True`` makes the fresh draws the family's reference programs for labelled-range problems.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from selfloop.frontier.family import Family

Example = tuple[str, str]  # (prompt, answer)


class Mixture:
    def __init__(
        self, family: Family, labelled_max: int, *, new_share: float, min_kept: int, program: bool = False
    ) -> None:
        self.family, self.labelled_max, self.program = family, labelled_max, program
        self.new_share, self.min_kept = new_share, min_kept
        self.rounds: list[list[Example]] = []
        self._older: list[Example] = []

    def add(self, examples: Sequence[Example]) -> None:
        if self.rounds:
            self._older.extend(self.rounds[-1])
        self.rounds.append(list(examples))

    def fresh(self, rng: random.Random) -> Example:
        sample = getattr(self.family, "sample_labelled", None)
        if sample is not None:
            problem = sample(self.labelled_max, rng)
        else:
            problem = self.family.sample(rng.randint(1, self.labelled_max), rng)
        if self.program:
            return self.family.program_prompt(problem), self.family.program(problem)  # type: ignore[attr-defined]
        return self.family.prompt(problem), self.family.solve(problem)

    def draw(self, rng: random.Random) -> Example:
        newest = self.rounds[-1] if self.rounds else []
        share = self.new_share * min(1.0, len(newest) / self.min_kept)
        u = rng.random()
        if newest and u < share:
            return rng.choice(newest)
        if self._older and rng.random() < 0.5:
            return rng.choice(self._older)
        return self.fresh(rng)
