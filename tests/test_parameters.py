"""Parameter ranges: declared once in each notebook's parameters cell, checked before any kernel starts.

Every test here reads notebook files or parses arguments; none starts a kernel.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from notebook_factory import write_notebook

import lib.workbook.runner as workbook
from lib import _checks
from lib.workbook import panels
from lib.workbook.cli import build_parser, main
from lib.workbook.parameters import check_declared
from lib.workbook.ranges import parse_range

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("comment", "inside", "outside"), [
    ("number of values, in [1, 2000]: more text", [1, 2000], [0, 2001, 3.5 - 4]),
    ("drop probability, in [0, 1)", [0, 0.999], [1, -0.1, math.nan]),
    ("a seed, in [0, 2**63)", [0, 2**63 - 1], [2**63, -1]),
    ("a step, in (0, inf)", [1e-30, 1e30], [0, math.inf, math.nan, -1e-5]),
    ("planted error, in (-inf, inf) except 0", [-1.5, 2], [0, 0.0, math.inf]),
    ("a dtype, one of {float16, float32, float64}", ["float16", "float64"], ["float8", 16]),
])
def test_a_help_comment_declares_what_the_parameter_accepts(comment, inside, outside):
    declared = parse_range(comment)
    assert all(declared.accepts(v) for v in inside)
    assert not any(declared.accepts(v) for v in outside)
    assert not declared.accepts(True) or declared.choices is not None  # a bool is not a number here


def test_a_comment_without_a_range_declares_none_and_a_bad_bound_is_named():
    assert parse_range("the original checker's step") is None
    with pytest.raises(ValueError, match="a range bound must be a number"):
        parse_range("in [1, n]")


def _parameter_lines(path: Path) -> dict[str, dict]:
    return workbook.declared_parameters(path)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_declares_a_range_its_defaults_satisfy(path):
    for name, info in _parameter_lines(path).items():
        if info["type"] in ("int", "float"):
            assert info["range"] is not None, f"{path.name}: {name} declares no range ('in [a, b]' in its comment)"
        if info["range"] is None:
            continue  # a bool's range is True and False; a free string (a path, a commit) has none
        assert info["range"].accepts(ast.literal_eval(info["default"])), f"{path.name}: {name}'s default"


def test_the_playgrounds_declared_ranges_are_the_ones_its_controls_enforce():
    declared = _parameter_lines(ROOT / "notebooks" / "13_playground.ipynb")
    assert (declared["size"]["range"].low, declared["size"]["range"].high) == (1, panels.MAX_SIZE)
    assert (declared["n_calls"]["range"].low, declared["n_calls"]["range"].high) == (1, panels.MAX_CALLS)
    with pytest.raises(ValueError, match=r"\[1, 50\]"):
        panels.State(size=panels.MAX_SIZE + 1)


def test_the_declared_switches_and_dtypes_are_the_librarys():
    from lib.replica import SWITCHES

    declared = _parameter_lines(ROOT / "notebooks" / "13_playground.ipynb")
    for name in ("divide_by", "rng", "forward", "backward_mask"):
        assert declared[name]["range"].choices == SWITCHES[name]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        dtype = _parameter_lines(path).get("dtype")
        assert dtype is None or dtype["range"].choices == _checks.FLOAT_DTYPE_NAMES, path.name


@pytest.fixture
def books(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_small.ipynb",
                   "size: int = 5  # values, in [1, 50]\neps: float = 1e-5  # step, in (0, inf)", ["print(size)"])
    write_notebook(folder / "02_large.ipynb", "size: int = 5  # values, in [1, 2000]\n"
                   "dtype: str = 'float32'  # dtype, one of {float16, float32, float64}\np: float = 0.3  # in [0, 1)",
                   ["print(size)"])
    write_notebook(folder / "03_also_large.ipynb", "size: int = 5  # values, in [1, 2000]", ["print(size)"])
    return folder


def test_a_value_outside_any_selected_notebooks_range_is_refused_naming_each_notebook_and_range(books):
    notebooks = workbook.discover(books)
    with pytest.raises(workbook.WorkbookError) as refused:
        workbook.resolve_parameters(notebooks, [("size", "1000")])
    assert str(refused.value) == ("parameter size=1000 is refused before any notebook runs: "
                                  "01_small.ipynb accepts size as an integer in [1, 50]")
    with pytest.raises(workbook.WorkbookError, match=r"01_small.ipynb accepts size as an integer in \[1, 50\]; "
                       r"02_large.ipynb and 03_also_large.ipynb accept size as an integer in \[1, 2000\]"):
        workbook.resolve_parameters(notebooks, [("size", "3000")])
    # only the selected notebooks count
    assert workbook.resolve_parameters(notebooks[1:], [("size", "1000")])[notebooks[1]] == {"size": 1000}


def test_the_runner_refuses_before_it_starts_anything(books, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--notebook-dir", str(books), "--output", str(out), "-p", "size=1000"]) == 2
    captured = capsys.readouterr()
    assert "01_small.ipynb accepts size as an integer in [1, 50]" in captured.err
    assert "Running" not in captured.out and not out.exists()


def test_eps_none_is_refused_by_a_message_that_offers_only_what_is_accepted(books):
    with pytest.raises(workbook.WorkbookError) as refused:
        workbook.resolve_parameters(workbook.discover(books), [("eps", "None")])
    assert "eps in (0, inf)" in str(refused.value) and "None" not in str(refused.value).split(":", 1)[1]


def test_a_float16_p_whose_scale_overflows_is_refused_with_the_bound_of_the_dtype(books):
    notebooks = workbook.discover(books)
    bound = _checks.largest_drop_probability("float16")
    assert math.isfinite(float(_checks.np.float16(1 / (1 - bound))))
    expected = rf"02_large.ipynb runs dtype=float16: p must be in \[0, {bound:g}\]"
    with pytest.raises(workbook.WorkbookError, match=expected):
        workbook.resolve_parameters(notebooks, [("dtype", "float16"), ("p", "0.99999")])
    assert workbook.resolve_parameters(notebooks, [("p", "0.99999")])[notebooks[1]] == {"p": 0.99999}  # float32


def test_a_notebooks_own_check_reads_the_same_declaration_and_says_the_same(books):
    path = books / "01_small.ipynb"
    check_declared(str(path), {"size": 50, "eps": 1e-5})
    expected = r"size=1000 is refused: 01_small.ipynb accepts size as an integer in \[1, 50\]"
    with pytest.raises(ValueError, match=expected):
        check_declared(str(path), {"size": 1000, "eps": 1e-5})
    with pytest.raises(ValueError, match=r"eps=-1 is refused"):
        check_declared(str(path), {"size": 5, "eps": -1})


def test_a_list_parameter_takes_numbers_and_refuses_anything_else_by_name(tmp_path):
    notebook = write_notebook(tmp_path / "01_values.ipynb", "values: list = [0.1, 0.2]  # input values",
                              ["print(values)"])
    assert workbook.resolve_parameters([notebook], [("values", "0.5,-1e-3")])[notebook] == {"values": [0.5, -1e-3]}
    for bad in ("abc", "1,nan", ""):
        with pytest.raises(workbook.WorkbookError, match=r"parameter values=.* is refused .*01_values.ipynb takes "
                           "values as finite numbers separated by commas"):
            workbook.resolve_parameters([notebook], [("values", bad)])


@pytest.mark.parametrize(("argv", "message"), [
    (["--eps", "-1e-5"], "argument --eps: must be a number in (0, inf); got -1e-5"),
    (["--eps=-1e-5"], "argument --eps: must be a number in (0, inf); got -1e-5"),
    (["--p", "1"], "argument --p: must be a number in [0, 1); got 1"),
    (["--values", "abc"], "argument --values: must be a number in (-inf, inf); got 'abc'"),
    (["--calls", "0"], "argument --calls: must be an integer in [1, inf); got 0"),
])
def test_diagnose_refuses_a_bad_number_naming_the_option_and_its_range(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["diagnose", *argv])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().endswith(message)


def test_diagnose_reads_negative_numbers_as_values():
    args = build_parser().parse_args(["diagnose", "--values", "-1e-3", "-2", "0.5", "--atol", "0"])
    assert args.values == [-1e-3, -2.0, 0.5]


def test_diagnose_refuses_a_p_whose_scale_overflows_the_dtype_with_the_dtypes_bound(capsys):
    assert main(["diagnose", "--dtype", "float16", "--p", "0.99999"]) == 2
    bound = _checks.largest_drop_probability("float16")
    assert capsys.readouterr().err.startswith(
        f"error: argument --p (with --dtype float16): p must be in [0, {bound:g}] for float16")
    assert bound == math.floor((1 - 1 / 65504) * 1e6) / 1e6


def test_the_readme_says_when_diagnose_exits_1():
    assert "`python -m lib diagnose` exits 1 when the replayed test fails" in (ROOT / "README.md").read_text()
