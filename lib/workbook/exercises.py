"""Exercises that check the answer: one helper for every notebook's check cells.

An exercise gives the learner a variable to fill in (`answer_2 = None`), and a
check cell right below it calls `check_answer`. Until the learner writes an
answer the cell says so and passes, so a headless run of the untouched
notebook stays green. A wrong answer stops the cell with one paragraph (no
traceback) that says how it is wrong without giving the answer away: a
direction and a band ("too large by 1 % to 10 %", "of the wrong sign"), never
the expected value or the offset to it. The hint stays hidden until the
learner asks (`show_hint("Exercise 2")`) or answers wrong a second time. A
right answer prints one line.

The expected value is always computed by the notebook's own cells (never typed
in), so changing a parameter changes what counts as right.

    answer_1 = None  # your answer: the slope at index 0
    check_answer("Exercise 1", answer_1, expected=slope[0], hint="divide the rise by the step")

The notebook's Solutions section computes a worked answer and runs the same
check on it, which proves on every run that the check accepts a right answer.
With `WORKBOOK_EXERCISE_AUDIT=1` in the environment (the test suite sets it),
every check that accepts a right answer also tries wrong ones against itself
(`lib.workbook.exercise_audit`).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable

from lib.workbook.answers import what_is_wrong
from lib.workbook.exercise_audit import audit_answer_check, audit_function_check

#: Printed while an answer is still `None` (or `...`).
NO_ANSWER = "{name}: no answer yet. Put yours where the exercise says and rerun this cell."

#: Printed lines are wrapped to this width, so they fit a notebook column.
WIDTH = 100

#: Set to "1" to make every accepted answer also audit its check (see the module docstring).
AUDIT_VARIABLE = "WORKBOOK_EXERCISE_AUDIT"

# Per kernel: each exercise's hint, and how many wrong answers it has had.
_hints: dict[str, str] = {}
_wrong_tries: dict[str, int] = {}


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


class WrongAnswer(AssertionError):
    """A wrong answer. In a notebook it shows as its message alone: IPython renders
    `_render_traceback_` instead of a traceback into this file."""

    def _render_traceback_(self) -> list[str]:
        return textwrap.wrap(str(self), WIDTH) or [""]


def show_hint(name: str) -> None:
    """Print the hint of exercise `name` (its check cell must have run once)."""
    if name not in _hints:
        print(f"{name}: no hint known yet; run its check cell first.")
    else:
        print(textwrap.fill(f"{name}, hint: {_hints[name]}", WIDTH, subsequent_indent="  "))


def check_answer(name: str, answer, expected, *, rtol: float = 1e-6, atol: float = 0.0,
                 hint: str = "", unordered: bool = False) -> Right | None:
    """Compare a learner's answer with the value the notebook computed.

    Args:
        name: what the messages call the exercise, e.g. "Exercise 3".
        answer: the learner's answer; None or Ellipsis means "not answered yet".
            Numbers and arrays match when |answer - expected| <= atol + rtol * |expected|
            element by element, after broadcasting to the expected shape; bools and
            strings must be equal (strings ignoring case and surrounding space).
        expected: the right answer, computed by the notebook.
        rtol, atol: tolerances for numbers (non-negative). Keep them no finer than the
            precision the notebook prints, so a learner who types a printed value passes.
        hint: one sentence that helps without giving the answer away; shown only on
            request or after the second wrong answer.
        unordered: the answer is a set of indices: any order, any container.
    Returns:
        None when there is no answer yet, a true `Right()` when the answer is right
        (it shows nothing as a cell's last value, so `assert check_answer(...)` and a
        bare call both read well).
    Raises:
        WrongAnswer: the answer is wrong; the message says how.
        ValueError: `rtol` or `atol` is negative.
    """
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}")
    if hint:
        _hints[name] = hint
    if answer is None or answer is Ellipsis:
        return _not_yet(name)
    problem = what_is_wrong(answer, expected, rtol, atol, unordered=unordered)
    if problem:
        _wrong(name, problem)
    if os.environ.get(AUDIT_VARIABLE) == "1":
        audit_answer_check(name, expected, rtol=rtol, atol=atol, unordered=unordered)
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
        WrongAnswer: the first input on which the two disagree, and how.
    """
    if hint:
        _hints[name] = hint
    if function is None or function is Ellipsis:
        return _not_yet(name)
    for number, args in enumerate(inputs, start=1):
        try:
            given = function(*args)
        except Exception as error:  # the learner's code failed: say so in one paragraph
            _wrong(name, f"on test input {number} of {len(inputs)}, your function raised "
                         f"{type(error).__name__}: {error}")
        problem = what_is_wrong(given, reference(*args), rtol, atol)
        if problem:
            _wrong(name, f"on test input {number} of {len(inputs)}, {problem}")
    if os.environ.get(AUDIT_VARIABLE) == "1":
        audit_function_check(name, reference, inputs, rtol=rtol, atol=atol)
    print(f"{name}: right on all {len(inputs)} test inputs.")
    return Right()


def _not_yet(name: str) -> None:
    print(NO_ANSWER.format(name=name))
    if name in _hints:
        print(f"  Stuck? show_hint({name!r}) prints a hint.")
    return None


def _wrong(name: str, problem: str) -> None:
    """Raise the one-paragraph WrongAnswer; from the second wrong try on, with the hint."""
    _wrong_tries[name] = _wrong_tries.get(name, 0) + 1
    if name not in _hints:
        tail = ""
    elif _wrong_tries[name] == 1:
        tail = f" Try again, or run show_hint({name!r})."
    else:
        tail = f" Hint: {_hints[name]}"
    raise WrongAnswer(f"{name}: {problem}{tail}")
