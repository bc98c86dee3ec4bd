"""Notebook 02: one Jacobian convention and one relative error (lib's, imported and shown), a
computation graph drawn twice, and exercises whose checks are exact where they ask for a whole
number and whose hints point the way without doing it.

These tests read the notebook's cells; the fast ones execute a few of its lines with other
parameters, so that "the expected value and the worked answer agree" holds for every accepted `p`,
not only for the ones a run happens to use.
"""

import math
import re
from fractions import Fraction
from pathlib import Path

import nbformat
import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_chain_rule_for_dropout.ipynb"


@pytest.fixture(scope="module")
def cells():
    return nbformat.read(str(NOTEBOOK), as_version=4).cells


def _code(cells, start: str) -> str:
    """The source of the one code cell that starts with `start`."""
    found = [c.source for c in cells if c.cell_type == "code" and c.source.startswith(start)]
    assert len(found) == 1, f"{len(found)} code cells start with {start!r}"
    return found[0]


def _lines_until(source: str, stop: str) -> str:
    """The cell's lines before the first one that starts with `stop`."""
    lines = source.splitlines()
    return "\n".join(lines[:next(k for k, line in enumerate(lines) if line.startswith(stop))])


def test_the_shared_tools_are_imported_and_shown_not_defined_again(cells):
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert not re.search(r"def (numerical_jacobian|relative_error)\b", code)
    for name in ("numerical_jacobian", "relative_error"):
        assert f"from lib.gradcheck import {name}" in code
        assert f"print(inspect.getsource({name}))" in code
    assert "relative_error(" in code and re.search(r"relative_error\([^()]*(\([^()]*\))?[^()]*\)\.max\(\)", code)


def test_one_jacobian_index_convention(cells):
    text = "\n".join(c.source for c in cells)
    assert "J[j, i] = ∂out_j" in text and "(J^T g)_i" in text
    assert not re.search(r"J\[i, j\]|∂out\[i\]/∂x\[j\]", text)


def test_the_graph_is_drawn_after_the_forward_and_after_the_backward(cells):
    drawn = [c.source for c in cells if c.cell_type == "code" and "draw_layer_graph(" in c.source
             and not c.source.lstrip().startswith("def ")]
    assert len(drawn) == 2
    assert all(source.rstrip().endswith("plt.show()") for source in drawn)
    assert "a fork adds" in drawn[1]  # the printed line says it, with the two incoming numbers
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "a fork adds" in prose


P_VALUES = sorted({k / 1000 for k in range(1000)} | {0.275, 0.45, 0.7, 0.825, 0.85, 0.95, 0.975}
                  | {float(v) for v in np.random.default_rng(2).uniform(0, 1, 200)})


def test_exercise_3_is_exact_and_its_worked_answer_agrees_for_every_p(cells):
    check = _code(cells, "p_as_written = Fraction(str(p))")
    solution = _code(cells, "exact_p = Fraction(str(p))")
    assert "rtol=0, atol=0" in check and "rtol=0, atol=0" in solution
    expected_code = _lines_until(check, "check_answer(")
    worked_code = _lines_until(solution, "in_floats")
    for p in P_VALUES:
        space = {"Fraction": Fraction, "math": math, "p": p}
        exec(expected_code, space)
        exec(worked_code, space)
        assert space["n_needed"] == space["worked_3"], p
        q = Fraction(str(p))  # the definition: the smallest whole n >= 1 with 2 sqrt(q (1-q) / n) <= 1/20
        n = space["n_needed"]
        assert n >= 1 and 1600 * q * (1 - q) <= n and (n == 1 or 1600 * q * (1 - q) > n - 1), p
    assert P_VALUES[0] == 0.0
    space = {"Fraction": Fraction, "math": math, "p": 0.0}
    exec(worked_code, space)
    assert space["worked_3"] == 1


def _hint(source: str) -> str:
    match = re.search(r'hint=((?:"[^"]*"\s*)+)\)', source)
    assert match, "no hint"
    return "".join(re.findall(r'"([^"]*)"', match.group(1)))


@pytest.mark.parametrize("start", ["grid, tiny", "p_as_written = Fraction(str(p))"])
def test_the_hints_of_exercises_1_and_3_are_one_sentence_pointers(cells, start):
    hint = _hint(_code(cells, start))
    assert not re.search(r"\d", hint), f"a hint with numbers is a recipe: {hint!r}"
    assert ";" not in hint and not re.search(r"\.\s+\S", hint), f"one sentence: {hint!r}"


def test_exercise_1_keeps_comparing_powers_of_ten_and_its_check_and_solution_agree(cells):
    check = _code(cells, "grid, tiny")
    solution = _code(cells, "# rounding: two values of size <= 1")
    call = 'check_answer("Exercise 1", decades('
    assert call in check and call in solution and "atol=1.0" in check and "atol=1.0" in solution
    assert _hint(check) == _hint(solution)
