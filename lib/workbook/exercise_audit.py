"""A check audits itself: the wrong answers a learner gives are refused, fairly.

When a notebook runs with `WORKBOOK_EXERCISE_AUDIT=1` (the test suite sets it
for every notebook it executes), each check that accepts a right answer then
tries answers a learner plausibly gives, built from the expected value:

* near misses (10 % off, twice, a tenth, the opposite sign, zero, off by one
  for whole numbers): each must be refused, with a message that contains
  neither the expected value nor the offset to it;
* the expected value computed in float16 or float32, where those round it
  out of the tolerance: refused, and the message must say so;
* the same right value in another form (a Python float, a list, another
  order for a set of indices): accepted.

A failed audit raises `AssertionError` naming the exercise and the case, so
the notebook's run fails where the unfair check is.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from lib.workbook.answers import shown, what_is_wrong

#: A number in a message with a decimal point or an exponent (a count like "10 %" has neither).
DECIMAL = re.compile(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?|[-+]?\d+e[-+]?\d+")


def audit_answer_check(name: str, expected, *, rtol: float, atol: float, unordered: bool) -> None:
    """Raise AssertionError when the check of `name` is unfair to some answer built from `expected`."""
    if unordered:
        _audit_set(name, expected, rtol, atol)
        return
    if isinstance(expected, (str, bool, np.bool_)):
        return  # a word or a truth value: nothing is near it, and nothing to leak
    want = np.asarray(expected)
    if want.dtype.kind not in "biuf" or want.size == 0 or not np.all(np.isfinite(want)):
        return
    for label, wrong in near_misses(want, rtol, atol):
        problem = what_is_wrong(wrong, expected, rtol, atol)
        _require(problem, name, f"accepts the wrong answer {label}")
        _require_no_leak(problem, wrong, want, name, label)
    for kind in (np.float16, np.float32):
        _audit_low_precision(name, expected, want, kind, rtol, atol)
    for label, same in ((" as a Python float", want.astype(float).tolist()),
                        ("as a list", want.tolist())):
        _require(not what_is_wrong(same, expected, rtol, atol), name,
                 f"refuses the right answer {label}")


def audit_function_check(name: str, reference: Callable, inputs, *, rtol: float,
                         atol: float) -> None:
    """Raise AssertionError when the check of `name` accepts a function that is 10 % off.

    The change must be caught wherever it is larger than the check's absolute tolerance atol
    (an rtol of 10 % or more would be too lenient); outputs all within atol of their 10 % copy
    cannot be told apart, fairly.
    """
    outputs = [np.asarray(reference(*args), dtype=np.float64) for args in inputs]
    for label, factor in (("10 % too large", 1.1), ("of the wrong sign", -1.0)):
        visible = any(np.any(np.abs(out * factor - out) > atol) for out in outputs)
        if visible:
            changed = [what_is_wrong(out * factor, out, rtol, atol) for out in outputs]
            _require(any(changed), name, f"accepts a function whose outputs are {label}")


def near_misses(want: np.ndarray, rtol: float, atol: float) -> list[tuple[str, np.ndarray]]:
    """Wrong answers near `want` that a fair check refuses: (label, answer) pairs.

    Only those outside the tolerance count: a miss the tolerance rightly allows is no miss.
    """
    whole = want.dtype.kind in "biu"
    misses = [("10 % too large", want * 1.1), ("twice as large", want * 2.0),
              ("a tenth", want / 10), ("of the wrong sign", -want), ("zero", np.zeros_like(want))]
    if whole:
        misses += [("one more", want + 1), ("one fewer", want - 1)]
    scale = atol + rtol * np.abs(want)
    # A whole number off by one is always wrong: "the smallest n" has one answer.
    return [(label, np.asarray(miss)) for label, miss in misses
            if np.any(np.abs(miss - want) > scale) or label in ("one more", "one fewer")]


def _audit_low_precision(name, expected, want, kind, rtol, atol) -> None:
    with np.errstate(over="ignore"):  # a large answer overflows float16: that is the point
        rounded = want.astype(kind)
    if not np.all(np.isfinite(rounded)) or np.all(
            np.isclose(rounded.astype(np.float64), want, rtol=rtol, atol=atol)):
        return  # that precision keeps the answer within the tolerance: it is right there
    answer = rounded[()] if want.ndim == 0 else rounded
    problem = what_is_wrong(answer, expected, rtol, atol)
    if want.dtype == np.float64:
        _require(np.dtype(kind).name in problem, name,
                 f"does not say that an answer computed in {np.dtype(kind).name} ran in it")


def _audit_set(name: str, expected, rtol: float, atol: float) -> None:
    values = sorted({float(v) for v in np.asarray(sorted(expected) if isinstance(
        expected, (set, frozenset)) else expected, dtype=np.float64).ravel()})
    for label, same in (("reversed", values[::-1]), ("as a set", set(values)),
                        ("as an array", np.array(values))):
        _require(not what_is_wrong(same, expected, rtol, atol, unordered=True), name,
                 f"refuses the right set of values {label}")
    stranger = max(values, default=0.0) * 2 + 1 + atol
    for label, wrong in (("with one value more", [*values, stranger]),
                         ("with one value fewer", values[1:])):
        if values:
            _require(what_is_wrong(wrong, expected, rtol, atol, unordered=True), name,
                     f"accepts the wrong set of values {label}")


def _require_no_leak(problem: str, wrong, want: np.ndarray, name: str, label: str) -> None:
    """The message must not show the expected value, nor the offset from the answer to it.

    Every decimal number in the message, except the learner's own answer as shown,
    must be more than 1 % away from each expected value and each offset.
    """
    if want.dtype.kind != "f":
        return  # whole numbers: a count in the message ("index 3 of 5") is no leak
    secrets = [float(v) for v in np.concatenate([want.ravel(), (want - wrong).ravel()])
               if v != round(float(v))]
    own = set(DECIMAL.findall(_shown_answer(wrong)))
    for token in DECIMAL.findall(problem):
        if token in own:
            continue
        shown = float(token)
        for secret in secrets:
            _require(not np.isclose(abs(shown), abs(secret), rtol=1e-2), name,
                     f"shows {token} when given the answer {label}")


def _shown_answer(wrong) -> str:
    return shown(wrong[()] if np.ndim(wrong) == 0 else wrong)


def _require(condition, name: str, what: str) -> None:
    if not condition:
        raise AssertionError(f"{name}'s check {what}: an unfair exercise check (see "
                             f"lib/workbook/exercise_audit.py)")
