"""Tests of lib.ablation: the combination grid, necessity/sufficiency, the compact table."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib import ablation
from lib.ablation import (
    ANY,
    Outcome,
    ablation_axes,
    base_switches,
    cause_table,
    compact_rows,
    describe,
    find,
    format_cause_table,
    format_table,
    grid_codes,
    having_all,
    necessary_values,
    outcome_of,
    run_grid,
    short,
    sort_rows,
    sufficient_values,
)
from lib.replica import ORIGINAL, SWITCHES


def fake(switches, passed=True, reproduces=False, first=None, masks_agree=True):
    """An Outcome for a synthetic grid (no replica run)."""
    nan = float("nan")
    return Outcome(switches=dict(switches), passed=passed, first_index=first, analytical=nan if passed else 1.0,
                   numerical=nan if passed else 2.0, tolerance=nan if passed else 0.5,
                   error_ratio=nan if passed else 2.0, max_error_ratio=0.1 if passed else 2.0,
                   failing=() if passed else (first,), reproduces=reproduces, masks_agree=masks_agree)


def synthetic_grid(rule):
    """Axes a in {x, y}, b in {u, v, w}, c in {0, 1}; rule(switches) -> (passed, reproduces)."""
    axes = {"a": ("x", "y"), "b": ("u", "v", "w"), "c": (0, 1)}
    out = []
    for values in itertools.product(*axes.values()):
        s = dict(zip(axes, values, strict=True))
        passed, reproduces = rule(s)
        out.append(fake(s, passed=passed, reproduces=reproduces, first=None if passed else 0))
    return axes, out


@pytest.fixture(scope="module")
def grid():
    axes = ablation_axes(42)
    return axes, run_grid(axes, p=0.3, eps=1e-5, values=ORIGINAL["values"])


def test_axes_cover_every_switch_plus_seed():
    axes = ablation_axes(42)
    assert list(axes)[:-1] == list(SWITCHES)
    assert axes["seed"] == (42, 0)
    assert ablation_axes(0)["seed"] == (0,)
    assert all(axes[name][0] == ORIGINAL[name] for name in SWITCHES)


def test_base_switches_are_the_original_with_overrides():
    axes = ablation_axes(42)
    assert base_switches(axes) == {name: ORIGINAL[name] for name in axes}
    assert base_switches(axes, dtype="float64")["dtype"] == "float64"
    with pytest.raises(ValueError, match="not on the grid"):
        base_switches(axes, seed=7)


def test_run_grid_covers_every_combination_once(grid):
    axes, outcomes = grid
    assert len(outcomes) == int(np.prod([len(v) for v in axes.values()])) == 192
    keys = {tuple(o.switches.values()) for o in outcomes}
    assert len(keys) == len(outcomes)


def test_run_grid_refuses_an_axis_that_is_also_fixed():
    with pytest.raises(ValueError, match="both an axis"):
        run_grid({"dtype": ("float32",)}, dtype="float64")


def test_original_combination_reproduces_the_reported_failure(grid):
    _, outcomes = grid
    original = find(outcomes, base_switches(ablation_axes(42)))
    assert original.failed and original.reproduces and original.masks_agree
    assert original.first_index == 0
    assert original.analytical == pytest.approx(1.4285715, abs=5e-8)
    assert original.numerical == pytest.approx(1.4305115, abs=5e-8)
    assert original.error_ratio > 1


def test_outcome_of_a_passing_run_has_no_numbers():
    o = outcome_of({"divide_by": "realised"})
    assert o.passed and o.first_index is None and o.failing == ()
    assert np.isnan(o.analytical) and not o.reproduces


def test_outcome_of_records_changing_masks():
    assert not outcome_of({"rng": "global"}).masks_agree
    assert outcome_of({"forward": "fixed_mask"}).masks_agree


def test_necessary_and_sufficient_on_a_synthetic_grid():
    # reproduces exactly when a == x and b != w; fails also whenever c == 1
    _axes, outcomes = synthetic_grid(lambda s: (not ((s["a"] == "x" and s["b"] != "w") or s["c"] == 1),
                                               s["a"] == "x" and s["b"] != "w"))
    base = {"a": "x", "b": "u", "c": 0}
    rows = cause_table(outcomes, lambda o: o.reproduces, base)
    assert necessary_values(rows) == [("a", "x")]
    assert sufficient_values(rows) == []
    by_value = {(r.switch, r.value): r for r in rows}
    assert by_value[("b", "u")].sufficient_at_base and not by_value[("b", "w")].sufficient_at_base
    assert not by_value[("a", "y")].sufficient_at_base
    assert by_value[("a", "x")].with_outcome == 4 and by_value[("a", "x")].with_value == 6
    assert by_value[("a", "y")].without_outcome == 4
    fails = cause_table(outcomes, lambda o: o.failed, base)
    assert sufficient_values(fails) == [("c", 1)]
    assert necessary_values(fails) == []
    assert len(having_all(outcomes, [("a", "x")])) == 6


def test_nothing_is_necessary_for_an_outcome_that_never_occurs():
    _, outcomes = synthetic_grid(lambda s: (True, False))
    rows = cause_table(outcomes, lambda o: o.reproduces, {"a": "x", "b": "u", "c": 0})
    assert necessary_values(rows) == []
    assert not any(r.sufficient for r in rows)


def test_single_valued_axes_are_left_out():
    outcomes = [fake({"a": "x", "b": b}, passed=False, reproduces=True, first=0) for b in ("u", "v")]
    rows = cause_table(outcomes, lambda o: o.reproduces, {"a": "x", "b": "u"})
    assert {r.switch for r in rows} == {"b"}


def test_default_grid_finds_the_precision_pair(grid):
    axes, outcomes = grid
    rows = cause_table(outcomes, lambda o: o.reproduces, base_switches(axes))
    assert necessary_values(rows) == [("divide_by", "nominal"), ("dtype", "float32")]
    assert sufficient_values(cause_table(outcomes, lambda o: o.failed, base_switches(axes))) == [("dtype", "float16")]


def test_compact_rows_are_lossless(grid):
    axes, outcomes = grid
    rows = compact_rows(outcomes)
    assert sum(r.count for r in rows) == len(outcomes)
    assert len(rows) < len(outcomes)
    names = list(axes)
    covered = []
    for r in rows:
        choices = [axes[n] if v == ANY else (v,) for n, v in zip(names, r.switches, strict=True)]
        members = list(itertools.product(*choices))
        assert len(members) == r.count
        for m in members:
            o = find(outcomes, dict(zip(names, m, strict=True)))
            assert ablation._signature(o) == ablation._signature(r.outcome)
        covered += members
    assert len(set(covered)) == len(outcomes)


def test_compact_rows_fold_an_irrelevant_switch():
    _axes, outcomes = synthetic_grid(lambda s: (s["a"] == "y", False))
    rows = compact_rows(outcomes)
    assert sorted((r.switches, r.count) for r in rows) == [(("x", ANY, ANY), 6), (("y", ANY, ANY), 6)]


def test_sort_rows_puts_reported_failures_first(grid):
    axes, outcomes = grid
    rows = sort_rows(compact_rows(outcomes), axes)
    classes = [ablation.outcome_class(r.outcome) for r in rows]
    assert classes == sorted(classes) and classes[0] == 0 and classes[-1] == 2


def test_format_table_has_a_header_and_section_per_class(grid):
    axes, outcomes = grid
    rows = sort_rows(compact_rows(outcomes), axes)
    text = format_table(rows, list(axes))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["divide", "dtype"]
    assert sum(line.startswith("--") for line in lines) == 3
    assert "-- reproduces the reported failure: 18 combinations --" in lines
    assert len(lines) == 1 + 3 + len(rows)
    assert "1.4305115" in text


def test_format_cause_table_marks_the_base_value(grid):
    axes, outcomes = grid
    base = base_switches(axes)
    a = cause_table(outcomes, lambda o: o.failed, base)
    b = cause_table(outcomes, lambda o: o.reproduces, base)
    lines = format_cause_table(a, b).splitlines()
    assert len(lines) == 2 + len(a)
    assert any("nominal<" in line for line in lines)
    assert any("float16 " in line and "64/64" in line for line in lines)


def test_short_and_describe():
    assert short(True) == "yes" and short(False) == "no"
    assert short(1) == "1" and short(0) == "0"  # seeds, not booleans
    assert short("fixed_mask") == "fixed"
    assert describe([]) == "none"
    assert describe([("a", 1)]) == "a=1"
    assert describe([("a", 1), ("b", "x"), ("c", True)]) == "a=1, b=x and c=True"


def test_grid_codes_place_every_outcome(grid):
    _axes, outcomes = grid
    codes, first, row_keys, _col_keys = grid_codes(outcomes, ("dtype", "divide_by", "seed"),
                                                  ("rng", "forward", "backward_mask", "restore_input"))
    assert codes.shape == (12, 16) and np.all(codes >= 0)
    assert row_keys[0] == ("float32", "nominal", 42)
    assert codes[0, 0] == 0 and first[0, 0] == "0"
    assert np.sum(codes == 0) == sum(o.reproduces for o in outcomes)


def test_plot_ablation_grid_draws_and_marks_the_base(grid):
    axes, outcomes = grid
    fig, ax = plt.subplots()
    codes = ablation.plot_ablation_grid(ax, outcomes, ("dtype", "divide_by", "seed"),
                                        ("rng", "forward", "backward_mask", "restore_input"),
                                        mark=base_switches(axes))
    assert codes.shape == (12, 16)
    assert len(ax.patches) == 1  # the frame around the base test
    assert len(ax.get_yticklabels()) == 12
    plt.close(fig)


def test_lib_grid_passes_in_float32_and_refuses_a_tiny_float16_step():
    rows = ablation.lib_grid(("float32", "float16"), 0.3, 42, 5, 1e-5)
    assert len(rows) == 8
    f32 = [r for r in rows if r.dtype == "float32"]
    assert all(r.passed for r in f32)
    refused = [r for r in rows if r.dtype == "float16" and r.step.startswith("eps")]
    assert refused and all(r.result is None and "too small" in r.refusal for r in refused)
    assert "refused" in ablation.format_lib_grid(rows)
