"""The exercise checks: silent until answered, precise when wrong, one line when right."""

import numpy as np
import pytest

from lib.workbook.exercises import check_answer, check_function


def test_an_unanswered_exercise_passes_and_says_so(capsys):
    assert check_answer("Exercise 1", None, 3.0, hint="count them") is None
    out = capsys.readouterr().out
    assert "Exercise 1: no answer yet" in out and "Hint: count them" in out


def test_a_right_number_passes_within_the_tolerance(capsys):
    assert check_answer("Exercise 2", 1.4285714, 1.4285715, rtol=1e-6)
    assert "Exercise 2: right." in capsys.readouterr().out


def test_a_wrong_number_says_by_how_much_and_repeats_the_hint():
    with pytest.raises(AssertionError, match=r"Exercise 3: 2\.0 is off by \+1 .*Hint: halve it"):
        check_answer("Exercise 3", 2.0, 1.0, hint="halve it")


def test_a_wrong_array_names_the_first_wrong_element():
    with pytest.raises(AssertionError, match="1 of 3 elements are off; the first is at flat index 2"):
        check_answer("Exercise 4", [1.0, 2.0, 4.0], np.array([1.0, 2.0, 3.0]))


def test_shapes_bools_and_strings_are_compared_as_such():
    with pytest.raises(AssertionError, match=r"shape \(3,\)"):
        check_answer("E", [1.0, 2.0], np.zeros(3))
    with pytest.raises(AssertionError, match="expected True or False"):
        check_answer("E", 1, True)
    with pytest.raises(AssertionError, match="'H2' is not it"):
        check_answer("E", "H2", "H4")
    assert check_answer("E", " h4 ", "H4")
    assert check_answer("E", 5, 5.0)  # a scalar broadcasts to the expected shape
    with pytest.raises(AssertionError, match="a number or an array of numbers"):
        check_answer("E", "five", 5.0)


def test_negative_tolerances_are_refused():
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"):
        check_answer("E", 1.0, 1.0, rtol=-1)


def test_a_function_is_checked_input_by_input():
    inputs = [(np.array([0.5, -1.0]),), (np.array([2.0]),)]
    assert check_function("E", lambda x: 1 - np.tanh(x) ** 2, lambda x: 1 / np.cosh(x) ** 2, inputs)
    with pytest.raises(AssertionError, match="on test input 1 of 2"):
        check_function("E", np.tanh, lambda x: 1 / np.cosh(x) ** 2, inputs)
    assert check_function("E", None, np.tanh, inputs) is None



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
