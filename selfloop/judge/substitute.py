"""Counterfactual programs: a program with some of its literals replaced, via the ``ast`` module.

The task judge runs a program answer on a variant of its task with this: a program that computes its output from
the inputs follows the change, one that prints a hard-coded answer does not. Matching is by constant, never by text.

Pure: parses and rewrites source; never compiles or runs it.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping
from dataclasses import dataclass

from selfloop.records import INT_LITERAL


@dataclass(frozen=True)
class Rewritten:
    source: str
    replaced: int  # how many constants were replaced


class NotParsed(ValueError):
    """The program does not parse (or cannot be rewritten) here; the message says why."""


def parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise NotParsed(f"{e.msg} (line {e.lineno})") from e
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
        raise NotParsed(f"{type(e).__name__}: {e}") from e


class _Replace(ast.NodeTransformer):
    def __init__(self, mapping: Mapping[str, str]):
        self.ints = {
            int(old): int(new)
            for old, new in mapping.items()
            if INT_LITERAL.fullmatch(old) and INT_LITERAL.fullmatch(new)
        }
        self.strs = dict(mapping)
        self.replaced = 0

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        value = node.value
        if type(value) is int and value in self.ints:
            new: object = self.ints[value]
        elif type(value) is str and value in self.strs:
            new = self.strs[value]
        else:
            return node
        self.replaced += 1
        return ast.copy_location(ast.Constant(new), node)


def substitute(tree: ast.Module, mapping: Mapping[str, str]) -> Rewritten:
    """The program of ``tree`` with the literals of ``mapping`` replaced (``tree`` is not changed).

    Matching is by constant, never by text, so ``123`` inside ``1234`` or inside a name is
    never touched:

    * a literal whose text is a decimal number (``"123"``) replaces int constants of
      that value (``123``; bools are not ints here) with the replacement's int value;
    * every literal also replaces str constants equal to its text, so
      ``int("123") + 456`` and ``"abc"[::-1]`` follow the inputs too.

    Any constant equal to an input is taken to *be* that input.
    """
    replace = _Replace(mapping)
    try:
        # NodeTransformer edits in place; each variant starts from the program as written.
        source = ast.unparse(replace.visit(copy.deepcopy(tree)))
    except (RecursionError, MemoryError, ValueError) as e:
        raise NotParsed(f"{type(e).__name__}: {e}") from e
    return Rewritten(source, replace.replaced)
