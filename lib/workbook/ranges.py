"""What a notebook parameter accepts, declared once in the help comment of its `parameters` cell.

Every parameter line of a notebook's `parameters` cell ends in a help comment,
and that comment states the accepted values in one of two forms, which the
runner reads from the file without starting a kernel:

    size: int = 5  # number of input values, in [1, 2000]: the original five, then fixed draws
    p: float = 0.3  # drop probability, in [0, 1)
    fault: float = 50.0  # planted error, in (-inf, inf) except 0
    dtype: str = "float32"  # input dtype, one of {float16, float32, float64}

* `in` and an interval: `[` and `]` include their bound, `(` and `)` exclude it.
  A bound is a number, `inf` or `-inf`, or integer arithmetic such as `2**63`
  or `10**7`. An open bound at infinity means any finite number. `except V`
  after the interval refuses that one value.
* `one of {a, b, c}`: the accepted strings, written without quotes.
* A bool parameter needs neither (True and False are its range), nor does a
  free string such as a path; every int and float parameter declares one.

`python -m lib run` checks every `-p NAME=VALUE` against the range of every
selected notebook that declares NAME, before any kernel starts; a notebook's
own check (for a user who changes the cell in JupyterLab) calls
`check_declared`, which reads the same comment, so both state one range.
"""

from __future__ import annotations

import argparse
import ast
import math
import numbers
import operator
import re
from dataclasses import dataclass

_INTERVAL = re.compile(r"\bin ([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])(?:\s+except\s+(-?[\w.+]*\w))?")
_CHOICES = re.compile(r"\bone of \{([^{}]*)\}")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}


def _bound(text: str) -> float | int:
    """A bound as written: a number, inf, or integer arithmetic (2**63, 10**7 - 1); nothing else is evaluated."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value,
                                                                                                  bool):
            return node.value
        if isinstance(node, ast.Name) and node.id == "inf":
            return math.inf
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"a range bound must be a number, inf or integer arithmetic; got {text.strip()!r}")

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except SyntaxError:
        raise ValueError(f"a range bound must be a number, inf or integer arithmetic; got {text.strip()!r}") from None


@dataclass(frozen=True)
class Range:
    """The values one parameter accepts: an interval (with one value excepted), or a set of strings."""

    text: str  # as the notebook writes it, e.g. "[1, 2000]" or "{float16, float32, float64}"
    low: float = -math.inf
    high: float = math.inf
    closed: tuple[bool, bool] = (True, True)
    excluded: float | None = None
    choices: tuple[str, ...] | None = None

    def accepts(self, value) -> bool:
        if self.choices is not None:
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        above = self.low < value or (self.closed[0] and value == self.low)
        below = value < self.high or (self.closed[1] and value == self.high)
        return above and below and value != self.excluded  # NaN fails both comparisons

    def __str__(self) -> str:
        return f"one of {self.text}" if self.choices is not None else f"in {self.text}"


def parse_range(comment: str) -> Range | None:
    """The range a help comment declares (see the module docstring), or None when it declares none."""
    found = _INTERVAL.search(comment)
    if found:
        opening, low, high, closing, excluded = found.groups()
        text = f"{opening}{low.strip()}, {high.strip()}{closing}" + (f" except {excluded}" if excluded else "")
        return Range(text, _bound(low), _bound(high), (opening == "[", closing == "]"),
                     _bound(excluded) if excluded else None)
    found = _CHOICES.search(comment)
    if found:
        choices = tuple(c.strip().strip("'\"") for c in found.group(1).split(",") if c.strip())
        return Range("{" + ", ".join(choices) + "}", choices=choices)
    return None


def argument_type(declared: str, convert=float):
    """An argparse `type` accepting numbers in the range `declared` (e.g. "(0, inf)"), so that a value
    outside it is refused by the parser, naming the option and the range, before any work starts."""
    accepted = parse_range(f"in {declared}")

    kind = "an integer" if convert is int else "a number"

    def check(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} {accepted}; got {text!r}") from None
        if not accepted.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {kind} {accepted}; got {text}")
        return value

    check.__name__ = convert.__name__  # argparse names the type in its own messages
    return check
