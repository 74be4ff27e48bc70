"""A frontier family written outside selfloop, as a user would (loaded as "frontier_plugin:Copy")."""

import random


class Copy:
    """Copy a string of digits; level = its length. Its only check splits the string in two."""

    name = "copy"
    alphabet = "0123456789="

    def sample(self, level, rng: random.Random):
        return ("".join(rng.choice("0123456789") for _ in range(level)),)

    def level_of(self, problem):
        return len(problem[0])

    def prompt(self, problem):
        return problem[0] + "="

    def solve(self, problem):
        return problem[0]

    def parse(self, problem, text):
        return text if len(text) == len(problem[0]) and text.isdigit() else None

    def checks(self, problem, trusted, rng):
        from selfloop.frontier.family import Check

        s = problem[0]
        if len(s) < 2:
            return []
        k = len(s) // 2
        return [Check("split", ((s[:k],), (s[k:],)), lambda a: None if None in a else a[0] + a[1])]
