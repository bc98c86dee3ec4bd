"""Exercises that check the answer: one helper for every notebook's check cells.

An exercise gives the learner a variable to fill in (`answer_2 = None`), and a
check cell right below it calls `check_answer`. Until the learner writes an
answer the cell says so and passes, so a headless run of the untouched
notebook stays green; a wrong answer raises an AssertionError that says how it
is wrong and repeats the hint; a right one prints one line. The expected value
is always computed by the notebook's own cells (never typed in), so changing a
parameter changes what counts as right.

    answer_1 = None  # your answer: the slope at index 0
    check_answer("Exercise 1", answer_1, expected=slope[0], hint="divide the rise by 2*eps")

The notebook's Solutions section computes a worked answer and runs the same
check on it, which proves on every run that the check accepts a right answer.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np


class Right:
    """What a check returns for a right answer: true, and silent as a notebook cell's last value.

    The check has already printed its line; a bare `True` under it would say
    it twice. IPython calls `_ipython_display_` instead of printing a repr.
    """

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "Right()"

    def _ipython_display_(self) -> None:
        pass


#: Printed while an answer is still `None` (or `...`).
NO_ANSWER = "{name}: no answer yet. Put yours where the exercise says and rerun this cell."

#: Printed lines are wrapped to this width, so they fit a notebook column.
WIDTH = 100


def check_answer(name: str, answer, expected, *, rtol: float = 1e-6, atol: float = 0.0,
                 hint: str = "") -> Right | None:
    """Compare a learner's answer with the value the notebook computed.

    Args:
        name: what the messages call the exercise, e.g. "Exercise 3".
        answer: the learner's answer; None or Ellipsis means "not answered yet".
            Numbers and arrays are compared with `np.allclose(answer, expected,
            rtol, atol)` after broadcasting to the expected shape; bools and
            strings must be equal (strings ignoring case and surrounding space).
        expected: the right answer, computed by the notebook.
        rtol, atol: tolerances for numbers (non-negative).
        hint: one sentence that helps without giving the answer away.
    Returns:
        None when there is no answer yet, a true `Right()` when the answer is right
        (it shows nothing as a cell's last value, so `assert check_answer(...)` and a
        bare call both read well).
    Raises:
        AssertionError: the answer is wrong; the message says how and repeats the hint.
        ValueError: `rtol` or `atol` is negative.
    """
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}")
    if answer is None or answer is Ellipsis:
        print(NO_ANSWER.format(name=name))
        if hint:
            print(textwrap.fill(f"Hint: {hint}", WIDTH, initial_indent="  ", subsequent_indent="  "))
        return None
    problem = _what_is_wrong(answer, expected, rtol, atol)
    if problem:
        raise AssertionError(f"{name}: {problem}" + (f" Hint: {hint}" if hint else ""))
    print(f"{name}: right.")
    return Right()


def check_function(name: str, function: Callable | None, reference: Callable, inputs, *,
                   rtol: float = 1e-6, atol: float = 0.0, hint: str = "") -> Right | None:
    """Check a learner's function against the notebook's reference on given inputs.

    Args:
        name: what the messages call the exercise.
        function: the learner's function, or None while unanswered.
        reference: the notebook's own implementation.
        inputs: a list of argument tuples; each is passed to both functions.
        rtol, atol, hint: as in `check_answer`.
    Returns:
        None when there is no function yet, `Right()` when it agrees on every input.
    Raises:
        AssertionError: the first input on which the two disagree, and how.
    """
    if function is None or function is Ellipsis:
        return check_answer(name, None, None, hint=hint)
    for number, args in enumerate(inputs, start=1):
        problem = _what_is_wrong(function(*args), reference(*args), rtol, atol)
        if problem:
            raise AssertionError(f"{name}: on test input {number} of {len(inputs)}, {problem}"
                                 + (f" Hint: {hint}" if hint else ""))
    print(f"{name}: right on all {len(inputs)} test inputs.")
    return Right()


def _what_is_wrong(answer, expected, rtol: float, atol: float) -> str:
    """'' when `answer` matches `expected`, else one sentence saying how it does not."""
    if isinstance(expected, str):
        if not isinstance(answer, str):
            return f"expected a string, got {type(answer).__name__}."
        return "" if answer.strip().lower() == expected.strip().lower() else f"{answer!r} is not it."
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(answer, (bool, np.bool_)):
            return f"expected True or False, got {answer!r}."
        return "" if bool(answer) == bool(expected) else f"{answer} is not it."
    want = np.asarray(expected)
    if np.asarray(answer).dtype.kind not in "biufc":
        return f"expected a number or an array of numbers, got {type(answer).__name__}."
    try:
        got = np.broadcast_to(np.asarray(answer, dtype=want.dtype if want.dtype.kind in "fc" else None),
                              want.shape)
    except (TypeError, ValueError):
        return f"expected something of shape {want.shape}, got {np.shape(answer)}."
    close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return ""
    if want.ndim == 0:
        return f"{answer!r} is off by {float(got - want):+.3g} ({_relative(got, want)} relative)."
    wrong = np.flatnonzero(~close)
    first = wrong[0]
    return (f"{wrong.size} of {want.size} elements are off; the first is at flat index {first} "
            f"({got.flat[first]!r}, off by {float(got.flat[first] - want.flat[first]):+.3g}).")


def _relative(got, want) -> str:
    scale = abs(float(want))
    return f"{abs(float(got - want)) / scale:.2g}" if scale else "inf"
