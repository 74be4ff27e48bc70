"""The starter task pack: labelled tasks of the easy levels of each generated family.

These are the only labels the loop gets: every harder problem is generated
unlabeled and solved by the model itself, checked in the sandbox. The pack
holds train-split problems only (by the same split rule as ingest), so none of
the fixed held-out tasks is among them.

``python -m selfloop.tasks.pack > corpus/orig/tasks/starter.jsonl`` rebuilds it.
"""

from __future__ import annotations

import random
import sys

from selfloop.records import TaskRecord
from selfloop.tasks.families import FAMILIES, problems

# family -> (difficulties, tasks per difficulty)
STARTER: dict[str, tuple[range, int]] = {"addition": (range(1, 4), 120), "reverse": (range(1, 5), 60)}


def starter_pack(seed: int = 0, heldout_fraction: float = 0.1) -> list[TaskRecord]:
    rng = random.Random(f"starter/{seed}")
    out = []
    for family, (levels, per_level) in STARTER.items():
        gen = FAMILIES[family]
        for difficulty in levels:
            for task in problems(family, difficulty, rng, per_level, heldout_fraction=heldout_fraction, heldout=False):
                out.append(gen.labelled(task))  # type: ignore[attr-defined]
    return out


def main() -> int:
    for task in starter_pack():
        sys.stdout.write(task.canonical_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
