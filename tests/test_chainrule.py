"""Unit tests for lib.chainrule."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from lib.chainrule import (
    CLOSE_ATOL,
    CLOSE_RTOL,
    PLANTED_BUGS,
    REFERENCE_RTOL,
    closed_form_backward,
    compare,
    comparison_table,
    numerical_jacobian,
    original_order_backward,
    plot_channel_jacobian,
    plot_relative_errors,
    probe_gradient,
    relative_error,
    rounding_bound,
    ulp_distance,
    unit_roundoff,
)
from lib.dropout import dropout, dropout2d, dropout_backward

DTYPES = ("float16", "float32", "float64")


# --- numerical_jacobian ---------------------------------------------------------------

def test_jacobian_of_a_linear_map_is_its_matrix_with_shape_out_by_in():
    a = np.arange(12.0).reshape(3, 4) - 5.0
    jacobian = numerical_jacobian(lambda z: a @ z, np.array([0.3, -1.0, 2.0, 7.5]))
    assert jacobian.shape == (3, 4)
    assert jacobian.dtype == np.float64
    np.testing.assert_allclose(jacobian, a, rtol=1e-9, atol=1e-9)


def test_jacobian_of_a_nonlinear_function_matches_its_derivative():
    x = np.array([0.5, -1.25, 3.0])
    jacobian = numerical_jacobian(np.sin, x)
    np.testing.assert_allclose(jacobian, np.diag(np.cos(x)), rtol=1e-8, atol=1e-10)


def test_jacobian_flattens_multidimensional_inputs_and_outputs():
    x = np.arange(6.0).reshape(2, 3)
    jacobian = numerical_jacobian(lambda z: z.T * 2.0, x)  # output is (3, 2): transposed order
    assert jacobian.shape == (6, 6)
    expected = np.zeros((6, 6))
    for i, j in np.ndindex(2, 3):
        expected[j * 2 + i, i * 3 + j] = 2.0
    np.testing.assert_allclose(jacobian, expected, atol=1e-9)


def test_jacobian_upcasts_to_float64_and_leaves_x_alone():
    x = np.array([-0.5, 0.0, 0.2], dtype=np.float32)
    before = x.copy()
    seen = []

    def forward(z):
        seen.append(z.dtype)
        return z * 3.0

    jacobian = numerical_jacobian(forward, x)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_array_equal(x, before)
    # float64 differences: far better than the 1e-3 a float32 step of 1e-5 would give
    np.testing.assert_allclose(np.diag(jacobian), 3.0, rtol=1e-9)


def test_jacobian_survives_a_forward_that_returns_its_input():
    jacobian = numerical_jacobian(lambda z: z, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(jacobian, np.eye(3), atol=1e-9)


def test_jacobian_refuses_a_step_too_small_to_move_x():
    with pytest.raises(ValueError, match="too small"):
        numerical_jacobian(lambda z: z, np.array([1e6]), eps=1e-12)


def test_jacobian_of_dropout_is_the_diagonal_of_mask_over_keep_probability():
    x = np.linspace(-1.0, 1.0, 9)
    p = 0.3
    _, mask = dropout(x, p, seed=3)
    jacobian = numerical_jacobian(lambda z: dropout(z, p, seed=3)[0], x)
    np.testing.assert_allclose(jacobian, np.diag(mask / (1 - p)), rtol=1e-9, atol=1e-12)
    assert np.all(jacobian[~np.eye(9, dtype=bool)] == 0.0)  # off-diagonal exactly zero


def test_jacobian_of_dropout2d_is_constant_within_each_channel_block():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    jacobian = numerical_jacobian(lambda z: dropout2d(z, 0.5, seed=1)[0], x)
    _, mask = dropout2d(x, 0.5, seed=1)
    expected = np.repeat(mask.ravel() / 0.5, 4)
    np.testing.assert_allclose(np.diag(jacobian), expected, rtol=1e-9, atol=1e-12)


# --- compare / comparison_table -------------------------------------------------------

def test_compare_identical_arrays_is_exact_and_close():
    row = compare("dx", np.array([1.0, -2.0]), np.array([1.0, -2.0]))
    assert (row.exact, row.close, row.max_diff) == (True, True, 0.0)


def test_compare_counts_signed_zeros_as_equal():
    assert compare("dx", np.array([-0.0, 1.0]), np.array([0.0, 1.0])).exact


def test_compare_upcasts_so_float32_and_its_float64_value_are_exact():
    value = np.float32(1.4285715)
    assert compare("a", np.array([value]), np.array([float(value)])).exact
    assert not compare("a", np.array([value]), np.array([1 / 0.7])).exact


def test_compare_close_follows_the_stated_tolerance():
    reference = np.array([1.0, 100.0])
    inside = reference + CLOSE_ATOL + 0.5 * CLOSE_RTOL * np.abs(reference)
    outside = reference + np.array([0.0, 2 * CLOSE_RTOL * 100.0])
    assert compare("in", inside, reference).close
    row = compare("out", outside, reference)
    assert not row.close and not row.exact
    assert row.max_diff == pytest.approx(2 * CLOSE_RTOL * 100.0)


def test_compare_nan_is_never_close():
    assert not compare("nan", np.array([np.nan]), np.array([1.0])).close


def test_compare_refuses_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        compare("dx", np.zeros(3), np.zeros(4))


def test_comparison_table_states_the_tolerance_and_aligns_rows():
    rows = [compare("dout", np.ones(2), np.ones(2)), compare("a_longer_name", np.ones(2), np.zeros(2))]
    text = comparison_table(rows).splitlines()
    assert text[0] == f"close: |ours - reference| <= {CLOSE_ATOL:g} + {CLOSE_RTOL:g} * |reference|"
    assert len({len(line) for line in text[1:]}) == 1
    assert text[2].split() == ["dout", "True", "True", "0.000e+00"]
    assert text[3].split()[1:3] == ["False", "False"]


def test_comparison_table_refuses_mixed_tolerances():
    rows = [compare("a", [1.0], [1.0]), compare("b", [1.0], [1.0], rtol=1e-3)]
    with pytest.raises(ValueError, match="different tolerances"):
        comparison_table(rows)


# --- rounding -------------------------------------------------------------------------

def test_unit_roundoff_and_rounding_bound():
    assert unit_roundoff("float32") == 2.0**-24
    assert unit_roundoff(np.float16) == 2.0**-11
    assert rounding_bound("float64") == pytest.approx(REFERENCE_RTOL, rel=1e-6)
    assert rounding_bound("float16") > rounding_bound("float32") > rounding_bound("float64")
    with pytest.raises(ValueError):
        unit_roundoff("int32")


def test_relative_error_treats_exact_zeros_and_stray_values():
    error = relative_error(np.array([1.1, 0.0, 1e-30, -2.0]), np.array([1.0, 0.0, 0.0, -2.0]))
    assert error[0] == pytest.approx(0.1)
    assert error[1] == 0.0
    assert error[2] == np.inf
    assert error[3] == 0.0


def test_ulp_distance_counts_representable_steps():
    for dtype in (np.float16, np.float32, np.float64):
        one = np.array([1.0], dtype=dtype)
        up = np.nextafter(one, dtype(2))
        assert ulp_distance(one, up)[0] == 1
        assert ulp_distance(one, np.nextafter(up, dtype(2)))[0] == 2
        tiny = np.array([np.finfo(dtype).smallest_subnormal], dtype=dtype)
        assert ulp_distance(tiny, -tiny)[0] == 2  # across zero
        assert ulp_distance(np.array([0.0], dtype), np.array([-0.0], dtype))[0] == 0


def test_ulp_distance_handles_large_values_of_opposite_sign():
    big = np.array([np.finfo(np.float64).max])
    assert ulp_distance(big, -big)[0] == 2 * (np.array(big).view(np.uint64)[0])


def test_ulp_distance_refuses_mixed_dtypes():
    with pytest.raises(TypeError):
        ulp_distance(np.zeros(2, np.float32), np.zeros(2, np.float64))


# --- backward variants ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.9])
def test_written_closed_form_and_original_order_equal_lib_bit_for_bit(dtype, p):
    grad = probe_gradient(2000, 1).astype(dtype)
    mask = dropout(np.zeros(2000, dtype), p, seed=2)[1]
    lib_grad = dropout_backward(grad, mask, p)
    for other in (closed_form_backward(grad, mask, p), original_order_backward(grad, mask, p)):
        assert other.dtype == np.dtype(dtype)
        assert np.array_equal(lib_grad.view(np.uint8), other.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_division_form_is_within_two_ulps_and_the_rounding_bound(dtype):
    p = 0.3
    grad = probe_gradient(5000, 4).astype(dtype)
    mask = np.ones(5000, dtype)
    divided = closed_form_backward(grad, mask, p, divide=True)
    written = closed_form_backward(grad, mask, p)
    assert ulp_distance(divided, written).max() <= 2
    exact = grad.astype(np.float64) / (1 - p)
    assert relative_error(written, exact).max() <= rounding_bound(dtype)


def test_backward_variants_check_shapes():
    with pytest.raises(ValueError, match="shape"):
        closed_form_backward(np.ones(3), np.ones(4), 0.3)
    with pytest.raises(TypeError):
        original_order_backward(np.ones(3, dtype=int), np.ones(3), 0.3)


def test_every_planted_bug_is_wrong_with_a_random_upstream_gradient():
    p = 0.3
    grad = probe_gradient(50, 7)
    mask = dropout(np.zeros(50), p, seed=7)[1]
    assert 0 < mask.sum() < 50
    right = dropout_backward(grad, mask, p)
    for name, bug in PLANTED_BUGS.items():
        wrong = bug(grad, mask, p)
        assert wrong.shape == right.shape and wrong.dtype == right.dtype, name
        assert relative_error(wrong, right).max() > 1e-3, name


def test_all_ones_upstream_gradient_hides_the_grad_output_bugs():
    p = 0.3
    ones = np.ones(50)
    mask = dropout(np.zeros(50), p, seed=7)[1]
    right = dropout_backward(ones, mask, p)
    for name in ("ignores grad_output", "reverses grad_output"):
        assert np.array_equal(PLANTED_BUGS[name](ones, mask, p), right), name
    assert not np.array_equal(PLANTED_BUGS["forgets the 1/(1-p) scale"](ones, mask, p), right)


def test_probe_gradient_is_exact_in_float16_bounded_and_repeatable():
    grad = probe_gradient((4, 250), [42, 5])
    assert grad.shape == (4, 250) and grad.dtype == np.float64
    assert np.array_equal(grad.astype(np.float16).astype(np.float64), grad)
    assert np.all((np.abs(grad) >= 0.5) & (np.abs(grad) <= 2.0))
    assert 0 < np.mean(grad > 0) < 1
    assert np.array_equal(grad, probe_gradient((4, 250), [42, 5]))
    assert not np.array_equal(grad, probe_gradient((4, 250), [42, 6]))


# --- plots ----------------------------------------------------------------------------

def test_plot_relative_errors_draws_finite_zero_and_infinite_bars():
    ax = Figure().subplots()
    plot_relative_errors(ax, {"a": 1e-7, "b": 0.0, "c": np.inf}, bounds={"a": 1.2e-7},
                         levels=[(6e-8, "u32")], fail_above=(1e-3, "rtol"))
    assert ax.get_yscale() == "log"
    texts = {t.get_text() for t in ax.texts}
    assert {"1e-07", "exact", "not finite"} <= texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_plot_channel_jacobian_returns_one_value_per_block():
    jacobian = np.diag(np.repeat([2.0, 0.0, 2.0], 4))
    ax = Figure().subplots()
    values = plot_channel_jacobian(ax, jacobian, 4)
    np.testing.assert_array_equal(values, [2.0, 0.0, 2.0])
    assert len(ax.patches) == 3
    with pytest.raises(ValueError):
        plot_channel_jacobian(Figure().subplots(), np.eye(6), 4)
