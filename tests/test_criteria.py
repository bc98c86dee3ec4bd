"""Tests of lib.criteria: each success criterion passes on lib and fails on a broken input."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib import criteria
from lib.criteria import (
    Criterion,
    check_fixed_test,
    dropout2d_channels,
    dropout_test,
    exact_scaling,
    fix_variants,
    format_variants,
    inference_is_identity,
    keep_rate,
    keep_rate_bounds,
    minimal_change_fixes,
    passes_unloosened,
    reproducible_with_seed,
    shapes_and_dtypes,
    sweep,
    sweep_passes,
)
from lib.replica import ORIGINAL


def test_criterion_prints_pass_or_fail_with_its_number():
    c = Criterion("3c keep rate", True, 0.7, "kept 0.7")
    assert str(c) == "PASS  criterion 3c keep rate: kept 0.7"
    assert c.number_label == "3c"
    name, passed, number, _ = Criterion("4 x", False, 2.0, "d")
    assert (name, passed, number) == ("4 x", False, 2.0)
    assert str(Criterion("4 x", False, 2.0, "d")).startswith("FAIL")


def test_dropout_test_matches_the_original():
    t = dropout_test("float32", 0.3, 42, 5)
    assert t.x.dtype == np.float32
    np.testing.assert_array_equal(t.x, np.array(ORIGINAL["values"], dtype=np.float32))
    np.testing.assert_array_equal(t.seeded_forward(t.x), t.fixed_mask_forward(t.x))
    np.testing.assert_array_equal(t.backward(t.grad_output, t.x), t.mask * np.float32(1 / 0.7))


def test_criterion_1_passes_unloosened_in_float32():
    results = check_fixed_test(dropout_test("float32", 0.3, 42, 5))
    c = passes_unloosened(results, "float32")
    assert c.passed and 0 < c.number < 0.01
    assert all(r.rtol == 1e-3 and r.atol == 1e-6 for r in results.values())


def test_criterion_1_fails_when_a_result_fails():
    good = check_fixed_test(dropout_test("float32", 0.3, 42, 5))
    t = dropout_test("float32", 0.3, 42, 5)
    broken = {"seeded forward": good["seeded forward"],
              "wrong backward": criteria.check_gradient(t.seeded_forward, lambda g, z: 2 * g, t.x, t.grad_output,
                                                        raise_on_failure=False)}
    c = passes_unloosened(broken, "float32")
    assert not c.passed and c.number > 1


def test_criterion_2_realised_step_fixes_and_fixed_mask_does_not():
    variants = fix_variants()
    assert not variants["original (unchanged)"].passed
    assert not variants["fixed mask only"].passed
    assert variants["loosened tolerances only"].passed
    assert variants["public fix: fixed mask + loosened"].passed
    c = minimal_change_fixes(variants)
    assert c.passed and c.number < 1
    table = format_variants(variants)
    assert len(table.splitlines()) == 1 + len(criteria.FIX_VARIANTS)
    assert "0.002" in table


def test_criterion_2_fails_in_float16_where_the_step_vanishes():
    c = minimal_change_fixes(fix_variants(dtype="float16"))
    assert not c.passed


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_criterion_3_behaviours_hold_on_lib(dtype, p):
    for check in (shapes_and_dtypes, inference_is_identity, keep_rate, exact_scaling, reproducible_with_seed):
        c = check(dtype, p, 42)
        assert c.passed, str(c)


def test_keep_rate_bounds_shrink_with_n():
    low, high = keep_rate_bounds(0.3, 10_000)
    assert low < 0.7 < high
    low2, high2 = keep_rate_bounds(0.3, 1_000_000)
    assert high2 - low2 == pytest.approx((high - low) / 10)
    assert keep_rate_bounds(0.0, 100) == (1.0, 1.0)


def test_keep_rate_detects_a_wrong_rate(monkeypatch):
    # a dropout that keeps with probability p instead of 1 - p
    real = criteria.dropout
    monkeypatch.setattr(criteria, "dropout", lambda x, p, **kw: real(x, 1 - p, **kw))
    assert not keep_rate("float32", 0.3, 42).passed


def test_exact_scaling_detects_a_wrong_factor(monkeypatch):
    real = criteria.dropout
    monkeypatch.setattr(criteria, "dropout", lambda x, p, **kw: (real(x, p, **kw)[0] * x.dtype.type(1.01),
                                                                 real(x, p, **kw)[1]))
    c = exact_scaling("float32", 0.3, 42)
    assert not c.passed and c.number == pytest.approx(0.01, rel=1e-3)


def test_reproducibility_detects_an_unseeded_dropout(monkeypatch):
    real = criteria.dropout
    monkeypatch.setattr(criteria, "dropout", lambda x, p, seed=None, **kw: real(x, p, **kw))
    c = reproducible_with_seed("float32", 0.3, 42)
    assert not c.passed and c.number > 0


def test_dropout2d_criterion_checks_channels_and_gradient():
    c, result = dropout2d_channels("float32", 0.3, 42)
    assert c.passed and c.number == result.max_error_ratio < 1
    assert result.analytical.shape == (4, 6, 3, 3)


def test_dropout2d_criterion_fails_with_a_wrong_backward(monkeypatch):
    monkeypatch.setattr(criteria, "dropout2d_backward", lambda g, mask, p: g * mask)  # forgets 1/(1-p)
    c, _ = dropout2d_channels("float32", 0.3, 42)
    assert not c.passed and c.number > 1


def test_sweep_shape_and_criterion_4():
    sizes, ps = (5, 20), (0.1, 0.5)
    ratios = sweep("float32", sizes, ps, 42)
    assert ratios.shape == (2, 2) and np.all(ratios < 1)
    assert np.all(ratios[:, 1] == 0)  # 1/(1-0.5) = 2 is exact
    c = sweep_passes(ratios, sizes, ps)
    assert c.passed and c.number == ratios.max()
    bad = ratios.copy()
    bad[1, 0] = 3.0
    c = sweep_passes(bad, sizes, ps)
    assert not c.passed and "size 20, p=0.1" in c.detail


def test_plot_sweep_draws_zero_ratios_on_a_floor():
    ratios = np.array([[0.0, 1e-3], [2e-3, 0.0]])
    fig, ax = plt.subplots()
    floor = criteria.plot_sweep(ax, ratios, (5, 50), (0.1, 0.5))
    assert floor == pytest.approx(1e-4)
    assert ax.get_yscale() == "log"
    assert ax.get_ylim()[0] < floor
    plt.close(fig)
