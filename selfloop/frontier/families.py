"""The built-in frontier families: reversed addition, reversed subtraction, string reversal.

Formats make extension learnable (Lee et al. 2025): one character per token, numbers least significant digit first,
answers zero-padded to a width the problem fixes, so the length of a right answer is known before it is read.

Each family's ``checks`` are the key-free consistency tests of its self labels:

* **shift**: an equivalent prompt with another answer path (a+d)+(b-d), (a+d)-(b+d), or a relabelled string;
* **split**: the problem cut at digit ``k`` into problems inside the trusted range; the answers are joined (and the
  carry or borrow *read* from the low answer picks which high answer applies), never added up by the check.

For ``tool`` labels each family shows a program prompt (``?`` where the answer prompt has ``=``) and gives
generation 0 a reference program that holds the inputs exactly as the prompt writes them and lets Python compute,
e.g. ``print(str(int('321'[::-1])+int('54'[::-1]))[::-1])``; ``read`` pads its printed answer to the problem's
width (shape only).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Sequence
from importlib.metadata import entry_points

from selfloop.errors import ConfigError
from selfloop.frontier.family import Check, Family, Problem

ENTRY_POINT_GROUP = "selfloop.families"

DIGITS = "0123456789"


def _number(digits: int, rng: random.Random) -> int:
    """A number with exactly ``digits`` digits (0 is a one-digit number)."""
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def _rev(n: int, width: int) -> str:
    return str(n).zfill(width)[::-1]


def _width(answer: str | None, width: int) -> str | None:
    """A reversed answer padded or trimmed to ``width`` digits; None when trimming would drop a nonzero digit."""
    if answer is None:
        return None
    if len(answer) < width:
        return answer + "0" * (width - len(answer))
    return answer[:width] if set(answer[width:]) <= {"0"} else None


def _cut(level: int, trusted: int) -> int:
    """Where a split puts the low part: both parts inside the trusted range while possible, else the high part."""
    return trusted if level <= 2 * trusted else level - trusted


def _same_answer(answers: Sequence[str | None]) -> str | None:
    return answers[0]


def _program_alphabet(*programs: str) -> str:
    return "".join(sorted(set("".join(programs))))


class _Arithmetic:
    """Two reversed operands and a reversed, zero-padded answer; the subclass says which operation."""

    name: str
    sign: str
    alphabet: str

    def value(self, a: int, b: int) -> int:
        raise NotImplementedError

    def width(self, a: int, b: int) -> int:
        raise NotImplementedError

    def order(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def sample(self, level: int, rng: random.Random) -> Problem:
        """Both operands with exactly ``level`` digits: the hardest problems of a level (candidates and tests)."""
        return self.order(_number(level, rng), _number(level, rng))

    def sample_labelled(self, max_level: int, rng: random.Random) -> Problem:
        """Operand lengths drawn apart in 1..max_level: generation 0 sees every shape of the labelled range."""
        return self.order(_number(rng.randint(1, max_level), rng), _number(rng.randint(1, max_level), rng))

    def level_of(self, problem: Problem) -> int:
        return max(len(str(problem[0])), len(str(problem[1])))

    def prompt(self, problem: Problem) -> str:
        a, b = problem
        return f"{str(a)[::-1]}{self.sign}{str(b)[::-1]}="

    def solve(self, problem: Problem) -> str:
        a, b = problem
        return _rev(self.value(a, b), self.width(a, b))

    def parse(self, problem: Problem, text: str) -> str | None:
        text = text.strip()
        ok = len(text) == self.width(*problem) and all(c in DIGITS for c in text)
        return text if ok else None

    def program_prompt(self, problem: Problem) -> str:
        return self.prompt(problem)[:-1] + "?"

    def literals(self, problem: Problem) -> tuple[str, ...]:
        a, b = problem
        return str(a)[::-1], str(b)[::-1]

    def program(self, problem: Problem) -> str:
        x, y = self.literals(problem)
        return f"print(str(int('{x}'[::-1]){self.sign}int('{y}'[::-1]))[::-1])"

    def read(self, problem: Problem, stdout: str) -> str | None:
        text = stdout.strip()
        return _width(text, self.width(*problem)) if text and all(c in DIGITS for c in text) else None

    def _shift(self, a: int, b: int, d: int) -> Problem:
        raise NotImplementedError

    def _shift_range(self, a: int, b: int) -> tuple[int, int]:
        raise NotImplementedError

    def checks(self, problem: Problem, trusted: int, rng: random.Random) -> list[Check]:
        a, b = problem
        found = [self._shift_check(a, b, rng) for _ in range(2)]
        if self.level_of(problem) > trusted:
            found.append(self._split_check(a, b, _cut(self.level_of(problem), trusted)))
        return [c for c in found if c is not None]

    def _shift_check(self, a: int, b: int, rng: random.Random) -> Check | None:
        lo, hi = self._shift_range(a, b)
        ds = [d for d in (rng.randint(lo, hi) for _ in range(8)) if d != 0] if lo < hi else []
        return Check("shift", (self._shift(a, b, ds[0]),), _same_answer) if ds else None

    def _split_check(self, a: int, b: int, k: int) -> Check | None:
        raise NotImplementedError


def _digit_bounds(n: int) -> tuple[int, int]:
    digits = len(str(n))
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


class Addition(_Arithmetic):
    """a + b; level = digits of the longer operand; answer width = level + 1."""

    name = "addition"
    sign = "+"
    alphabet = DIGITS + "+=?" + _program_alphabet("print(str(int(''[::-1])+int(''[::-1]))[::-1])")

    def value(self, a: int, b: int) -> int:
        return a + b

    def width(self, a: int, b: int) -> int:
        return max(len(str(a)), len(str(b))) + 1

    def _shift(self, a: int, b: int, d: int) -> Problem:
        return a + d, b - d

    def _shift_range(self, a: int, b: int) -> tuple[int, int]:
        (a_lo, a_hi), (b_lo, b_hi) = _digit_bounds(a), _digit_bounds(b)
        return max(a_lo - a, b - b_hi), min(a_hi - a, b - b_lo)

    def _split_check(self, a: int, b: int, k: int) -> Check:
        m = 10**k
        width = self.width(a, b)
        low, high, high_carry = (a % m, b % m), (a // m, b // m), (a // m, b // m + 1)

        def combine(answers: Sequence[str | None]) -> str | None:
            lo, hi, hi_carry = answers
            lo = _width(lo, k + 1)
            if lo is None or lo[k] not in "01":
                return None
            # The low answer's top digit is the carry; it picks which high answer continues the number.
            top = hi if lo[k] == "0" else hi_carry
            return None if top is None else _width(lo[:k] + top, width)

        return Check("split", (low, high, high_carry), combine)


class Subtraction(_Arithmetic):
    """a - b with a >= b; level = digits of a; answer width = level."""

    name = "subtraction"
    sign = "-"
    alphabet = DIGITS + "-=?" + _program_alphabet("print(str(int(''[::-1])-int(''[::-1]))[::-1])")

    def order(self, a: int, b: int) -> tuple[int, int]:
        return (a, b) if a >= b else (b, a)

    def value(self, a: int, b: int) -> int:
        return a - b

    def width(self, a: int, b: int) -> int:
        return max(len(str(a)), len(str(b)))

    def _shift(self, a: int, b: int, d: int) -> Problem:
        return a + d, b + d

    def _shift_range(self, a: int, b: int) -> tuple[int, int]:
        (a_lo, a_hi), (b_lo, b_hi) = _digit_bounds(a), _digit_bounds(b)
        return max(a_lo - a, b_lo - b), min(a_hi - a, b_hi - b)

    def checks(self, problem: Problem, trusted: int, rng: random.Random) -> list[Check]:
        # The low problem borrows a leading 1 (k + 1 digits), so the cut sits one digit lower than addition's.
        return super().checks(problem, max(1, trusted - 1), rng)

    def _split_check(self, a: int, b: int, k: int) -> Check | None:
        m = 10**k
        width = self.width(a, b)
        a_hi, b_hi = a // m, b // m
        problems: tuple[Problem, ...] = ((m + a % m, b % m), (a_hi, b_hi))
        if a_hi > b_hi:
            problems += ((a_hi, b_hi + 1),)

        def combine(answers: Sequence[str | None]) -> str | None:
            lo, hi = _width(answers[0], k + 1), answers[1]
            if lo is None or lo[k] not in "01":
                return None
            # A low answer under m (top digit 0) means the low digits borrowed from the high part.
            if lo[k] == "1":
                top = hi
            else:
                top = answers[2] if len(answers) > 2 else None
            return None if top is None else _width(lo[:k] + top, width)

        return Check("split", problems, combine)


class Reverse:
    """Reverse a string of letters; level = its length."""

    name = "reverse"
    letters = "abcdefghij"
    alphabet = letters + "=?" + _program_alphabet("print(''[::-1])")

    def sample(self, level: int, rng: random.Random) -> Problem:
        return ("".join(rng.choice(self.letters) for _ in range(level)),)

    def sample_labelled(self, max_level: int, rng: random.Random) -> Problem:
        return self.sample(rng.randint(1, max_level), rng)

    def level_of(self, problem: Problem) -> int:
        return len(problem[0])

    def prompt(self, problem: Problem) -> str:
        return problem[0] + "="

    def solve(self, problem: Problem) -> str:
        return problem[0][::-1]

    def parse(self, problem: Problem, text: str) -> str | None:
        text = text.strip()
        return text if len(text) == len(problem[0]) and all(c in self.letters for c in text) else None

    def program_prompt(self, problem: Problem) -> str:
        return problem[0] + "?"

    def literals(self, problem: Problem) -> tuple[str, ...]:
        return (problem[0],)

    def program(self, problem: Problem) -> str:
        return f"print('{problem[0]}'[::-1])"

    def read(self, problem: Problem, stdout: str) -> str | None:
        return self.parse(problem, stdout)

    def checks(self, problem: Problem, trusted: int, rng: random.Random) -> list[Check]:
        (s,) = problem
        perm = list(self.letters)
        rng.shuffle(perm)
        there, back = str.maketrans(self.letters, "".join(perm)), str.maketrans("".join(perm), self.letters)

        def relabel(answers: Sequence[str | None]) -> str | None:
            return None if answers[0] is None else answers[0].translate(back)

        found = [Check("relabel", ((s.translate(there),),), relabel)]
        if len(s) > trusted:
            k = _cut(len(s), trusted)

            def join(answers: Sequence[str | None]) -> str | None:
                head, tail = answers
                return None if head is None or tail is None else tail + head

            found.append(Check("split", ((s[:k],), (s[k:],)), join))
        return found


BUILTIN = {family.name: family for family in (Addition, Subtraction, Reverse)}


def load_family(spec: str) -> Family:
    """A built-in family by name, an installed entry point of group ``selfloop.families``, or ``module:object``."""
    if spec in BUILTIN:
        return BUILTIN[spec]()
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if found:
        obj = found[0].load()
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f'frontier family "{spec}": cannot import it ({e})') from None
    else:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f'frontier family "{spec}": not built in ({known}), no entry point, not "module:object"')
    family = obj() if isinstance(obj, type) else obj
    missing = [
        m
        for m in ("name", "alphabet", "sample", "level_of", "prompt", "solve", "parse", "checks")
        if not hasattr(family, m)
    ]
    if missing:
        raise ConfigError(f'frontier family "{spec}" lacks {", ".join(missing)} (see README, "Writing a family")')
    return family
