"""The exercise checks: silent until answered, fair when wrong, one line when right.

Fair means: a wrong answer gets one paragraph that says which way and how far
(in bands), never the expected value or the offset to it; the hint waits for
a request or a second wrong try; a set of indices may come in any order; an
answer computed in float16 is told so. `lib.workbook.exercise_audit` tries
these kinds of wrong answers against every check that the notebooks run.
"""

import re

import numpy as np
import pytest

from lib.workbook import exercises
from lib.workbook.answers import what_is_wrong
from lib.workbook.exercise_audit import audit_answer_check, audit_function_check
from lib.workbook.exercises import WrongAnswer, check_answer, check_function, show_hint


@pytest.fixture(autouse=True)
def fresh_kernel(monkeypatch):
    """Each test starts as a new kernel would: no hints known, no wrong tries counted."""
    monkeypatch.setattr(exercises, "_hints", {})
    monkeypatch.setattr(exercises, "_wrong_tries", {})


def test_an_unanswered_exercise_passes_and_keeps_its_hint_hidden(capsys):
    assert check_answer("Exercise 1", None, 3.0, hint="count them") is None
    out = capsys.readouterr().out
    assert "Exercise 1: no answer yet" in out and "show_hint('Exercise 1')" in out
    assert "count them" not in out
    show_hint("Exercise 1")
    assert "count them" in capsys.readouterr().out


def test_the_hint_comes_with_the_second_wrong_try_not_the_first():
    with pytest.raises(WrongAnswer) as first:
        check_answer("Exercise 3", 2.0, 1.0, hint="halve it")
    assert "halve it" not in str(first.value) and "show_hint" in str(first.value)
    with pytest.raises(WrongAnswer, match="Hint: halve it"):
        check_answer("Exercise 3", 2.0, 1.0, hint="halve it")


def test_a_right_number_passes_within_the_tolerance(capsys):
    assert check_answer("Exercise 2", 1.4285714, 1.4285715, rtol=1e-6)
    assert "Exercise 2: right." in capsys.readouterr().out


@pytest.mark.parametrize(("answer", "words"), [
    (1.1, "too large by 10 % to 100 %"), (1.005, "too large by less than 1 %"),
    (0.95, "too small by 1 % to 10 %"), (0.3, "too small by a factor of 2 to 10"),
    (30.0, "too large by more than a factor of 10"), (-1.0, "wrong sign"), (0.0, "zero"),
])
def test_a_wrong_number_says_which_way_and_how_far_in_bands(answer, words):
    with pytest.raises(WrongAnswer, match=re.escape(words)):
        check_answer("E", answer, 1.0)


@pytest.mark.parametrize("expected", [1.4305115, 0.0062, -3.75e-7, 336.5])
@pytest.mark.parametrize("factor", [1.1, 0.5, -1.0, 3.0])
def test_a_wrong_answer_never_shows_the_expected_value_or_the_offset(expected, factor):
    problem = what_is_wrong(expected * factor, expected, 1e-6, 0.0)
    numbers = [float(t) for t in re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?", problem)]
    own = float(f"{expected * factor:.6g}")
    for secret in (expected, expected * factor - expected):
        assert not any(np.isclose(abs(n), abs(secret), rtol=1e-2) for n in numbers if n != own), problem


def test_a_wrong_array_names_the_first_wrong_index_but_not_its_value():
    problem = what_is_wrong([1.0, 2.0, 4.0], np.array([1.0, 2.0, 3.0]), 1e-6, 0.0)
    assert "index 2 of 3" in problem and "too large" in problem and "3" not in problem.split("of 3")[1]


def test_a_set_of_indices_is_accepted_in_any_order_and_container():
    for answer in ([3, 0, 4], (4, 3, 0), {0, 3, 4}, np.array([4, 0, 3])):
        assert check_answer("E", answer, np.array([0, 3, 4]), unordered=True)
    with pytest.raises(WrongAnswer, match="1 is missing"):
        check_answer("E", [3, 0], [0, 3, 4], unordered=True)
    with pytest.raises(WrongAnswer, match="1 of yours should not be there"):
        check_answer("E", {0, 1, 3, 4}, [0, 3, 4], unordered=True)


def test_an_answer_computed_in_float16_is_told_so():
    u = np.finfo(np.float16).eps / 2  # a numpy float16: (1 + u)**2 - 1 stays in float16
    with pytest.raises(WrongAnswer, match=r"ran in float16.*float\(\)"):
        check_answer("E", (1 + u) ** 2 - 1, 2 * float(u) + float(u) ** 2, rtol=1e-3)
    assert check_answer("E", (1 + float(u)) ** 2 - 1, 2 * float(u) + float(u) ** 2, rtol=1e-3)


def test_shapes_bools_and_strings_are_compared_as_such():
    with pytest.raises(WrongAnswer, match=r"shape \(3,\)"):
        check_answer("E", [1.0, 2.0], np.zeros(3))
    with pytest.raises(WrongAnswer, match="expected True or False"):
        check_answer("E", 1, True)
    with pytest.raises(WrongAnswer, match="'H2' is not it"):
        check_answer("E", "H2", "H4")
    assert check_answer("E", " h4 ", "H4")
    assert check_answer("E", 5, 5.0)  # a scalar broadcasts to the expected shape
    with pytest.raises(WrongAnswer, match="a number or an array of numbers"):
        check_answer("E", "five", 5.0)
    with pytest.raises(WrongAnswer, match="a number or an array of numbers, got set"):
        check_answer("E", {1, 2}, np.array([1, 2]))


def test_negative_tolerances_are_refused():
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"):
        check_answer("E", 1.0, 1.0, rtol=-1)


def test_a_function_is_checked_input_by_input():
    inputs = [(np.array([0.5, -1.0]),), (np.array([2.0]),)]
    assert check_function("E", lambda x: 1 - np.tanh(x) ** 2, lambda x: 1 / np.cosh(x) ** 2, inputs)
    with pytest.raises(WrongAnswer, match="on test input 1 of 2"):
        check_function("E", np.tanh, lambda x: 1 / np.cosh(x) ** 2, inputs)
    assert check_function("E", None, np.tanh, inputs) is None
    with pytest.raises(WrongAnswer, match="on test input 1 of 2, your function raised KeyError: 'x'"):
        check_function("E", lambda x: {}["x"], np.tanh, inputs)


def test_the_audit_catches_a_lenient_count_and_a_lenient_function_check():
    with pytest.raises(AssertionError, match=r"accepts the wrong answer one (more|fewer)"):
        audit_answer_check("E", 336, rtol=0.02, atol=0.0, unordered=False)
    audit_answer_check("E", 336, rtol=0.0, atol=0.0, unordered=False)
    with pytest.raises(AssertionError, match="10 % too large"):
        audit_function_check("E", np.tanh, [(np.array([1.0]),)], rtol=0.5, atol=0.0)
    audit_answer_check("E", [0, 3], rtol=0, atol=0, unordered=True)  # a fair set check
    assert check_answer("E", [0.0, 0.5], [0.5, 0.0], rtol=1e-9, unordered=True)


def test_the_audit_runs_on_every_accepted_answer_when_asked(monkeypatch):
    monkeypatch.setenv("WORKBOOK_EXERCISE_AUDIT", "1")
    with pytest.raises(AssertionError, match="one more"):
        check_answer("E", 336, 336, rtol=0.01)
    assert check_answer("E", 336, 336, rtol=0)


def test_a_wrong_answer_shows_one_paragraph_and_no_traceback():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.user_ns["check_answer"] = check_answer
    with capture_output() as seen:
        ran = shell.run_cell("check_answer('E', 2.0, 1.0)", store_history=False)
    assert not ran.success
    shown = seen.stdout + seen.stderr
    assert "E: 2 is too large" in shown
    assert "Traceback" not in shown and "exercises.py" not in shown


def test_a_right_answer_is_true_and_shows_nothing_as_a_cells_last_value():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    for returned, shows in ((check_answer, False), (lambda *a: bool(check_answer(*a)), True)):
        shell.user_ns["check"] = returned
        with capture_output() as seen:
            ran = shell.run_cell("check('E', 2.0, 2.0)", store_history=False)  # as nbval runs a cell
        assert ran.result  # true either way ...
        assert ("True" in seen.stdout) is shows, seen.stdout  # ... but a plain bool is displayed under the line
