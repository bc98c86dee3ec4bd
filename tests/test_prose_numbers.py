"""The prose-number rule itself: it flags a default-only number, and only that."""

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from prose_numbers import parameter_bound_claims, significant_digits


def _run(markdown: str, printed: str):
    cell = new_code_cell("print(x)", outputs=[new_output("stream", name="stdout", text=printed)])
    return new_notebook(cells=[new_markdown_cell(markdown), cell])


def test_a_number_only_the_default_run_prints_is_flagged_unless_its_paragraph_says_so():
    default, other = "error 1.4305115, size 121,428\n", "error 1.0000001, size 7\n"
    flagged = parameter_bound_claims(_run("The error is 1.4305115 and 121,428 moved.", default),
                                     _run("", other))
    assert [number for number, _ in flagged] == ["1.4305115", "121,428"]
    assert parameter_bound_claims(_run("With the default parameters the error is 1.4305115.", default),
                                  _run("", other)) == []
    assert parameter_bound_claims(_run("The post-mortem reported 1.4305115.", default), _run("", other)) == []


def test_numbers_every_run_prints_and_short_numbers_pass():
    printed = "u = 5.96e-08, n = 12\n"
    assert parameter_bound_claims(_run("The unit roundoff 5.96e-08 and 12 elements.", printed),
                                  _run("", printed)) == []
    assert [significant_digits(t) for t in ("0.0012", "1.00136e-5", "121,428", "12")] == [2, 6, 6, 2]
