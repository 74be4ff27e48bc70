"""Task families: generators of verifiable problems, and how each is shown to the model.

A family makes problems (``make``: unlabeled, with a checker -- trusted Python run in the sandbox -- but no reference
answer), labels them for starter packs (``labelled``), renders them per answer mode (``answer``: direct; ``program``:
a Python program the sandbox runs) and ``decode``s what the model wrote. Every problem carries ``VARIANTS``
counterfactual variants, against which the task judge catches hard-coded output. Unknown task files use `Generic`.

Pure: no model, no sandbox, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

from selfloop.records import TaskRecord, Variant, split_of

Mode = Literal["answer", "program"]
MODES: tuple[str, ...] = ("answer", "program")
PROGRAM_TAG = "program: "
# Counterfactual variants per generated problem: a right program costs 1 + VARIANTS
# sandbox jobs; two make a partly hard-coded program passing by coincidence unlikely.
VARIANTS = 2
VARIANT_DRAWS = 1000


def is_heldout(task: TaskRecord, heldout_fraction: float) -> bool:
    """The same rule ingest applies to task files: a pure function of family, difficulty and id."""
    return split_of(task.split_key, heldout_fraction) == "heldout"


class Generic:
    """A family known only from task files: prompts as written, answers as written."""

    name = "generic"

    def render(self, task: TaskRecord, mode: str, digit_format: str) -> str:
        if mode == "program":
            return PROGRAM_TAG + task.prompt
        return task.prompt

    def decode(self, task: TaskRecord, text: str, mode: str, digit_format: str) -> str:
        return text if mode == "program" else text.strip()

    def target(self, task: TaskRecord, mode: str, digit_format: str) -> str | None:
        """The assistant turn a labelled record trains with: its program, or its answer in the
        family's format; None when it has none for this mode."""
        if mode == "program":
            return task.solution
        if task.answer is None or task.tests is not None:
            return None
        return self.format_answer(task.answer.strip(), digit_format)

    def format_answer(self, answer: str, digit_format: str) -> str:
        return answer

    def supports(self, task: TaskRecord, mode: str) -> bool:
        """Tasks with tests are answered by a program only; others either way when they can be checked."""
        if mode == "program":
            return True
        return task.tests is None and (task.checker is not None or task.answer is not None)


def _spaced(text: str) -> str:
    return " ".join(text)


class Addition(Generic):
    """Multi-digit addition; difficulty = digits of the longer operand.

    In ``answer`` mode digits are spelled apart, so every digit is its own token, and by
    default least significant digit first (``reversed``), the order in which carries are
    computed (Lee et al. 2025; Zhou et al. 2024); ``decode`` turns them back into a number.
    """

    name = "addition"

    def make(self, difficulty: int, rng: random.Random) -> TaskRecord:
        a = _number(difficulty, rng)
        b = _number(rng.randint(1, difficulty), rng)
        if rng.random() < 0.5:
            a, b = b, a
        return TaskRecord(
            id=f"{a}+{b}",
            family=self.name,
            difficulty=difficulty,
            prompt=f"{a} + {b}",
            checker=_sum_checker(a, b),
            variants=_variants(f"{self.name}/{a}+{b}", lambda r: self._variant(a, b, r)),
        )

    def _variant(self, a: int, b: int, rng: random.Random) -> Variant | None:
        """Operands of the same digit counts, none equal to an original, distinct unless the
        originals are, and with another sum (None: draw again)."""
        x = _number(len(str(a)), rng)
        y = x if a == b else _number(len(str(b)), rng)
        if {x, y} & {a, b} or (a != b and x == y) or x + y == a + b:
            return None
        return Variant(substitute={str(a): str(x), str(b): str(y)}, checker=_sum_checker(x, y))

    def labelled(self, task: TaskRecord) -> TaskRecord:
        a, b = self._operands(task)
        return task.model_copy(update={"answer": str(a + b), "solution": f"print({a} + {b})"})

    def _operands(self, task: TaskRecord) -> tuple[int, int]:
        left, _, right = task.prompt.partition("+")
        return int(left), int(right)

    def _digits(self, n: int, digit_format: str) -> str:
        return self.format_answer(str(n), digit_format)

    def render(self, task: TaskRecord, mode: str, digit_format: str) -> str:
        if mode == "program":
            return PROGRAM_TAG + task.prompt
        a, b = self._operands(task)
        return f"{self._digits(a, digit_format)} + {self._digits(b, digit_format)} ="

    def decode(self, task: TaskRecord, text: str, mode: str, digit_format: str) -> str:
        if mode == "program":
            return text
        digits = "".join(text.split())
        return digits[::-1] if digit_format == "reversed" else digits

    def format_answer(self, answer: str, digit_format: str) -> str:
        return _spaced(answer[::-1] if digit_format == "reversed" else answer)


class Reverse(Generic):
    """Reverse a random lowercase string; difficulty = its length."""

    name = "reverse"
    LETTERS = "abcdefghijklmnopqrstuvwxyz"

    def make(self, difficulty: int, rng: random.Random) -> TaskRecord:
        word = "".join(rng.choice(self.LETTERS) for _ in range(difficulty))
        return TaskRecord(
            id=word,
            family=self.name,
            difficulty=difficulty,
            prompt=f"reverse {word}",
            checker=_reverse_checker(word),
            variants=_variants(f"{self.name}/{word}", lambda r: self._variant(word, r)),
        )

    def _variant(self, word: str, rng: random.Random) -> Variant | None:
        """Another word of the same length; longer than one letter, not a palindrome, so that
        printing the input as given fails it (None: draw again)."""
        other = "".join(rng.choice(self.LETTERS) for _ in range(len(word)))
        if other == word or (len(other) > 1 and other == other[::-1]):
            return None
        return Variant(substitute={word: other}, checker=_reverse_checker(other))

    def labelled(self, task: TaskRecord) -> TaskRecord:
        word = self._word(task)
        return task.model_copy(update={"answer": word[::-1], "solution": f"print({word!r}[::-1])"})

    def _word(self, task: TaskRecord) -> str:
        return task.prompt.removeprefix("reverse ").strip()

    def render(self, task: TaskRecord, mode: str, digit_format: str) -> str:
        if mode == "program":
            return PROGRAM_TAG + task.prompt
        return f"reverse: {_spaced(self._word(task))}"

    def decode(self, task: TaskRecord, text: str, mode: str, digit_format: str) -> str:
        return text if mode == "program" else "".join(text.split())

    def format_answer(self, answer: str, digit_format: str) -> str:
        return _spaced(answer)


def _number(digits: int, rng: random.Random) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _sum_checker(a: int, b: int) -> str:
    return f"def check(answer):\n    return answer.strip() == str({a} + {b})\n"


def _reverse_checker(word: str) -> str:
    return f"def check(answer):\n    return answer.strip() == {word!r}[::-1]\n"


def _variants(seed: str, draw: Callable[[random.Random], Variant | None]) -> list[Variant]:
    """Up to ``VARIANTS`` distinct variants from ``draw``, from a generator seeded by the task alone.

    Not from the caller's ``rng``, so the problems drawn (and the fixed held-out sets) are
    the same with or without variants. Each variant's answer differs from the task's, so a
    program whose output does not depend on the inputs always fails one.
    """
    rng = random.Random(f"variants/{seed}")
    out: list[Variant] = []
    for _ in range(VARIANT_DRAWS):
        if len(out) == VARIANTS:
            break
        variant = draw(rng)
        if variant is not None and variant not in out:
            out.append(variant)
    return out


FAMILIES: dict[str, Generic] = {f.name: f for f in (Addition(), Reverse())}
GENERIC = Generic()


def family_of(task: TaskRecord) -> Generic:
    """The family that knows how to show this task (its generator's, or the generic one)."""
    return FAMILIES.get(task.family, GENERIC)


def conversations(
    task: TaskRecord, modes: tuple[str, ...] | list[str], digit_format: str
) -> list[list[dict[str, str]]]:
    """The user/assistant exchanges a labelled task trains as: one per mode it has a target for."""
    fam = family_of(task)
    out = []
    for mode in modes:
        if not fam.supports(task, mode):
            continue
        target = fam.target(task, mode, digit_format)
        if target:
            out.append(
                [
                    {"role": "user", "content": fam.render(task, mode, digit_format)},
                    {"role": "assistant", "content": target},
                ]
            )
    return out


def problems(
    family: str,
    difficulty: int,
    rng: random.Random,
    count: int,
    *,
    heldout_fraction: float,
    heldout: bool,
    attempts_per_task: int = 50,
) -> list[TaskRecord]:
    """Up to ``count`` distinct problems of one split (held-out or train), drawn from ``rng``.

    Fewer come back when the family has too few problems of that difficulty
    (one-digit addition has 100).
    """
    gen = FAMILIES[family]
    seen: dict[str, TaskRecord] = {}
    for _ in range(count * attempts_per_task):
        if len(seen) >= count:
            break
        task = gen.make(difficulty, rng)  # type: ignore[attr-defined]
        if task.id not in seen and is_heldout(task, heldout_fraction) == heldout:
            seen[task.id] = task
    return list(seen.values())


def heldout_set(family: str, difficulty: int, count: int, *, seed: int, heldout_fraction: float) -> list[TaskRecord]:
    """The fixed held-out tasks of a family and difficulty: the same for every generation and run."""
    rng = random.Random(f"heldout/{seed}/{family}/{difficulty}")
    return problems(family, difficulty, rng, count, heldout_fraction=heldout_fraction, heldout=True)
