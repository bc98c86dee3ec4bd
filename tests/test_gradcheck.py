"""Tests for lib.gradcheck: correct functions pass, wrong ones fail, x is never touched."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from lib import (
    GradCheckResult,
    GradientCheckError,
    check_gradient,
    dropout,
    dropout2d,
    dropout2d_backward,
    dropout_backward,
    numerical_gradient,
)

SEEDS = st.integers(0, 2**32 - 1)
FIRST_LINE = re.compile(r"^Gradient check failed for (\w+): gradient mismatch at index (\d+)$")
ORIGINAL_X = (-0.5, 0.0, 0.2, 0.5, 1.0)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --- smooth functions with hand-written backward (vector-Jacobian products) -----------------


def tanh(x):
    return np.tanh(x)


def tanh_backward(g, x):
    return g * (1 - np.tanh(x) ** 2)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_backward(g, x):
    s = sigmoid(x)
    return g * s * (1 - s)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(g, x):
    # J^T g for J = diag(y) - y y^T, row by row.
    y = softmax(x)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def logsumexp(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def logsumexp_backward(g, x):
    return g[..., None] * softmax(x)


def cube(x):
    return x**3


def cube_backward(g, x):
    return 3 * g * x**2


def linear(v):
    return 2 * v


def linear_backward(g, v):
    return 2 * g


def matmul_pair(w):
    return (lambda x: x @ w), (lambda g, x: g @ w.T)


def smooth_case(name, rng, dtype, shape):
    """(forward, backward) for one of the smooth functions; matmul draws its W from rng."""
    if name == "matmul":
        return matmul_pair(rng.uniform(-1, 1, (shape[-1], 3)).astype(dtype))
    return {
        "tanh": (tanh, tanh_backward),
        "sigmoid": (sigmoid, sigmoid_backward),
        "softmax": (softmax, softmax_backward),
        "logsumexp": (logsumexp, logsumexp_backward),
        "cube": (cube, cube_backward),
    }[name]


# Input ranges (low, high, away_from_zero). float64 resolves everything over wide
# ranges. float32 has a noise floor: with the default half-step h = cbrt(eps32)
# ~ 4.9e-3, re-rounding an output y costs up to ulp(y) / (2h) ~ 1.2e-5 * |y| in
# the difference quotient, and the central difference itself is off by
# h^2 f'''/6. Those must stay below atol + rtol * |gradient| = 1e-6 + 1e-3 *
# |gradient|, which holds where the gradient is not small: tanh and sigmoid away
# from saturation, x**3 away from 0 (its truncation error is exactly h^2 =
# 2.4e-5), log-sum-exp over a few values of similar size.
DOMAIN = {
    np.float64: {
        "tanh": (-5, 5, False), "sigmoid": (-8, 8, False), "softmax": (-5, 5, False),
        "logsumexp": (-5, 5, False), "cube": (-3, 3, False), "matmul": (-2, 2, False),
    },
    np.float32: {
        "tanh": (-2, 2, False), "sigmoid": (-3, 3, False), "softmax": (-1, 1, False),
        "logsumexp": (-0.5, 0.5, False), "cube": (0.25, 3, True), "matmul": (-1, 1, False),
    },
}
# softmax and matmul couple elements: perturbing one input re-rounds several
# outputs, so in float32 the floor is ~1e-5 * sum |g_j| and any gradient entry
# that happens to be near 0 (e.g. sum(softmax) has gradient exactly 0) cannot be
# resolved at atol=1e-6 with the default step. The float32 property is
# stated for entries that stand clear of that floor.
COUPLED = {"softmax", "matmul"}


def draw_inputs(rng, dtype, shape, low, high, away_from_zero):
    if away_from_zero:
        x = rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)
    else:
        x = rng.uniform(low, high, shape)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softmax", "logsumexp", "cube", "matmul"])
@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 3), cols=st.integers(1, 4), seed=SEEDS)
def test_smooth_functions_pass_at_the_defaults(name, dtype, rows, cols, seed):
    rng = np.random.default_rng(seed)
    x = draw_inputs(rng, dtype, (rows, cols), *DOMAIN[dtype][name])
    forward, backward = smooth_case(name, rng, dtype, x.shape)
    g = rng.uniform(-1, 1, np.shape(forward(x))).astype(dtype)
    if dtype == np.float32 and name in COUPLED:
        exact = backward(g.astype(np.float64), x.astype(np.float64))
        assume(np.min(np.abs(exact)) >= 0.05 * np.max(np.abs(g)))
    result = check_gradient(forward, backward, x, g)
    assert result.passed
    assert result.max_error_ratio <= 1
    assert result.failing_indices.size == 0
    assert result.dtype == np.dtype(dtype).name


def test_scalar_output_with_zero_dimensional_grad_output():
    x = np.random.default_rng(3).uniform(-3, 3, 7)

    def forward(v):
        return logsumexp(v[None, :])[0]

    def backward(g, v):
        return g * softmax(v)

    result = check_gradient(forward, backward, x, np.float64(0.7))
    assert result.passed and result.analytical.shape == x.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("forward_kind", ["fixed_mask", "seeded"])
@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 40), p=st.floats(0.0, 0.95), seed=SEEDS)
def test_dropout_passes_at_the_defaults(forward_kind, dtype, size, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    _, mask = dropout(x, p, seed=seed)
    if forward_kind == "fixed_mask":
        scale = dtype(1 / (1 - p))

        def forward(v):
            return v * mask * scale
    else:

        def forward(v):
            return dropout(v, p, seed=seed)[0]

    result = check_gradient(forward, lambda grad, v: dropout_backward(grad, mask, p), x, g)
    assert result.passed and result.max_error_ratio <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 3)] * 4), p=st.floats(0.0, 0.95), seed=SEEDS)
def test_dropout2d_passes_at_the_defaults(dtype, shape, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    _, mask = dropout2d(x, p, seed=seed)
    result = check_gradient(
        lambda v: dropout2d(v, p, seed=seed)[0],
        lambda grad, v: dropout2d_backward(grad, mask, p),
        x, g,
    )
    assert result.passed and result.max_error_ratio <= 1


def test_a_large_constant_output_does_not_swamp_the_difference():
    # Summing each loss first would add 1e12 to the tiny difference and lose it
    # (float64 keeps ~1e-4 absolute at 1e12); subtracting the outputs element
    # by element first cancels the constant exactly.
    x = np.random.default_rng(4).standard_normal(6)

    def forward(v):
        return np.concatenate([[1e12], 2 * v])

    g = np.ones(7)
    result = check_gradient(forward, lambda grad, v: 2 * grad[1:], x, g)
    assert result.passed
    # The input is hard: the loss-first difference quotient misses by far more than the tolerance.
    h = result.step[0] / 2
    plus, minus = x.copy(), x.copy()
    plus[0] += h
    minus[0] -= h
    loss_first = (np.sum(forward(plus) * g) - np.sum(forward(minus) * g)) / (plus[0] - minus[0])
    assert abs(loss_first - 2) > 10 * result.tolerance[0]


# --- wrong backward functions fail, at the right index ---------------------------------------

P = 0.3
SCALE32 = np.float32(1 / (1 - P))
MASK8 = np.array([0, 1, 1, 0, 1, 1, 1, 0], np.float32)

WRONG_BACKWARDS = {
    "missing 1/(1-p)": lambda g, x: g * MASK8,
    "scaled by 1/p": lambda g, x: g * MASK8 / np.float32(P),
    "inverted mask": lambda g, x: g * (1 - MASK8) * SCALE32,
    "sign flip": lambda g, x: -g * MASK8 * SCALE32,
    "identity": lambda g, x: g,
}


def fixed_mask_problem(dtype=np.float32):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(8).astype(dtype)
    g = (rng.uniform(0.5, 2, 8) * rng.choice([-1, 1], 8)).astype(dtype)
    return x, g, (lambda v: v * MASK8 * SCALE32)


def expected_failures(wrong, g, rtol=1e-3, atol=1e-6):
    """Flat indices where `wrong` misses the exact gradient g * mask / (1 - p) by the pass rule."""
    exact = g.astype(np.float64) * MASK8 / (1 - P)
    wrong = np.asarray(wrong, np.float64)
    return np.flatnonzero(np.abs(wrong - exact) > atol + rtol * np.maximum(np.abs(wrong), np.abs(exact)))


def test_the_correct_backward_passes_on_the_fixed_mask_problem():
    x, g, forward = fixed_mask_problem()
    assert check_gradient(forward, lambda grad, v: dropout_backward(grad, MASK8, P), x, g).passed


@pytest.mark.parametrize("name", WRONG_BACKWARDS)
def test_wrong_backward_raises_at_the_first_failing_index(name):
    x, g, forward = fixed_mask_problem()
    backward = WRONG_BACKWARDS[name]
    expected = expected_failures(backward(g, x), g)
    assert expected.size > 0
    with pytest.raises(GradientCheckError) as caught:
        check_gradient(forward, backward, x, g)
    first = FIRST_LINE.match(str(caught.value).splitlines()[0])
    assert first is not None
    assert first.group(1) == "float32"
    assert int(first.group(2)) == expected[0]
    result = caught.value.result
    assert isinstance(result, GradCheckResult)
    assert not result.passed
    np.testing.assert_array_equal(result.failing_indices, expected)
    assert result.first_failing_index == expected[0]
    assert result.worst_index in result.failing_indices
    assert result.max_error_ratio > 1
    assert result.max_error_ratio == result.error_ratio.ravel()[result.worst_index]


@pytest.mark.parametrize("name", WRONG_BACKWARDS)
def test_raise_on_failure_false_returns_the_failed_result(name):
    x, g, forward = fixed_mask_problem()
    result = check_gradient(forward, WRONG_BACKWARDS[name], x, g, raise_on_failure=False)
    assert isinstance(result, GradCheckResult)
    assert not result.passed
    np.testing.assert_array_equal(result.failing_indices, expected_failures(WRONG_BACKWARDS[name](g, x), g))


@pytest.mark.parametrize("name", ["missing 1/(1-p)", "scaled by 1/p"])
def test_result_arrays_describe_each_element(name):
    # One variant has |analytical| < |numerical|, the other the reverse, so the
    # tolerance must take the larger of the two, as the original pass rule did.
    x, g, forward = fixed_mask_problem(np.float64)
    backward = WRONG_BACKWARDS[name]
    result = check_gradient(forward, backward, x, g, raise_on_failure=False)
    a, n = result.analytical, result.numerical
    assert a.dtype == n.dtype == np.float64 and a.shape == n.shape == x.shape
    np.testing.assert_allclose(a, backward(g, x), rtol=1e-6)
    np.testing.assert_allclose(n, g * MASK8 / (1 - P), rtol=1e-6)
    # Plus the rounding allowance of the measurement reported (a failing element's is measured).
    np.testing.assert_allclose(result.tolerance, 1e-6 + 1e-3 * np.maximum(abs(a), abs(n)) + result.noise)
    np.testing.assert_allclose(result.difference, a - n)
    np.testing.assert_allclose(result.error_ratio, abs(a - n) / result.tolerance)


def test_first_line_names_the_first_failure_not_the_worst():
    x, g, forward = fixed_mask_problem()
    # Index 1 is 1 % off (just failing), index 4 is 50 % off (the worst).
    factors = np.array([1, 1.01, 1, 1, 1.5, 1, 1, 1], np.float32)
    with pytest.raises(GradientCheckError) as caught:
        check_gradient(forward, lambda grad, v: dropout_backward(grad, MASK8, P) * factors, x, g)
    assert str(caught.value).splitlines()[0].endswith("gradient mismatch at index 1")
    assert caught.value.result.worst_index == 4
    np.testing.assert_array_equal(caught.value.result.failing_indices, [1, 4])


# --- the failure message -----------------------------------------------------------------------


def element_rows(message):
    """{index tuple: {column name: value}} from the element table of a failure message."""
    lines = message.splitlines()
    head = next(i for i, line in enumerate(lines) if all(w in line for w in ("analytical", "numerical", "step")))
    names = lines[head].split()[1:]
    rows = {}
    for line in lines[head + 1:]:
        tokens = line.split()
        try:
            values = [float(t) for t in tokens[-len(names):]]
        except ValueError:
            break
        index = tuple(int(d) for d in re.findall(r"\d+", " ".join(tokens[:-len(names)])))
        rows[index] = dict(zip(names, values, strict=True))
    return rows


def test_failure_message_layout():
    x, g, forward = fixed_mask_problem()
    with pytest.raises(GradientCheckError) as caught:
        check_gradient(forward, WRONG_BACKWARDS["missing 1/(1-p)"], x, g, rtol=2e-3, atol=3e-6)
    message, result = str(caught.value), caught.value.result
    failing = result.failing_indices
    assert failing.size == 5  # the kept elements; all of them are listed
    tolerances = re.search(r"rtol=(\S+), atol=(\S+?)[\s,;)]", message)
    assert tolerances is not None
    assert (float(tolerances.group(1)), float(tolerances.group(2))) == (2e-3, 3e-6)
    mismatched = re.search(r"Mismatched elements: (\d+) / (\d+) \((\d+(?:\.\d+)?)%\)", message)
    assert mismatched is not None
    assert (int(mismatched.group(1)), int(mismatched.group(2))) == (5, 8)
    assert float(mismatched.group(3)) == pytest.approx(62.5, abs=0.05)
    rows = element_rows(message)
    assert set(rows) == {(int(i),) for i in failing}
    for i in failing:
        row = rows[(int(i),)]
        assert row["analytical"] == pytest.approx(result.analytical[i], rel=1e-6)
        assert row["numerical"] == pytest.approx(result.numerical[i], rel=1e-6)
        assert row["step"] == pytest.approx(result.step[i], rel=1e-4)


def test_failure_message_lists_the_first_few_of_many_failures():
    x = np.linspace(-1, 1, 30)
    with pytest.raises(GradientCheckError) as caught:
        check_gradient(lambda v: 2 * v, lambda g, v: 3 * g, x, np.ones(30))
    message = str(caught.value)
    assert "Mismatched elements: 30 / 30 (100" in message
    rows = element_rows(message)
    assert 1 <= len(rows) < 30
    assert set(rows) == {(i,) for i in range(len(rows))}
    assert re.search(rf"\b{30 - len(rows)} more\b", message)


def test_failure_message_shows_multi_dimensional_indices_plainly():
    x = np.ones((2, 3))

    def backward(g, v):
        # Wrong only at flat index 4, i.e. element (1, 1).
        return np.where(np.arange(6).reshape(2, 3) == 4, 3 * g, 2 * g)

    with pytest.raises(GradientCheckError) as caught:
        check_gradient(lambda v: 2 * v, backward, x, np.ones((2, 3)))
    message = str(caught.value)
    assert message.splitlines()[0].endswith("gradient mismatch at index 4")
    # A row names the element (1, 1) as two plain numbers, not as numpy scalar reprs.
    assert "np.int64" not in message and "int64(" not in message
    assert set(element_rows(message)) == {(1, 1)}


# --- the caller's x is never modified -------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_x_is_bitwise_unchanged_after_a_pass_and_after_a_failure(dtype):
    # A linear forward passes in every dtype, float16 included (2 * x is exact).
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(dtype)
    before = x.copy()
    assert check_gradient(linear, linear_backward, x, np.ones_like(x)).passed
    assert same_bits(x, before)
    with pytest.raises(GradientCheckError):
        check_gradient(linear, lambda g, v: 3 * g, x, np.ones_like(x))
    assert same_bits(x, before)
    numerical_gradient(linear, x, np.ones_like(x))
    assert same_bits(x, before)


@pytest.mark.parametrize("fail_on_call", [2, 3, 6, 11])
def test_x_is_unchanged_when_forward_raises_part_way(fail_on_call):
    x = np.array(ORIGINAL_X, np.float32)
    before = x.copy()
    calls = 0

    def forward(v):
        nonlocal calls
        calls += 1
        if calls == fail_on_call:
            raise RuntimeError("forward failed")
        return 3 * v

    with pytest.raises(RuntimeError, match="forward failed"):
        check_gradient(forward, lambda g, v: 3 * g, x, np.ones(5))
    assert calls == fail_on_call
    assert same_bits(x, before)


@pytest.mark.parametrize(
    "view",
    [lambda v: v, lambda v: v[::-1], lambda v: v.reshape(-1), lambda v: v[1:]],
    ids=["itself", "reversed", "reshaped", "sliced"],
)
def test_forward_returning_a_view_of_its_input(view):
    # The outputs at x+h and x-h must be copied before the next perturbation,
    # or both would read the same (restored) buffer and the slope would be 0.
    x = np.random.default_rng(6).standard_normal(6)
    before = x.copy()

    def backward(g, v):
        grad = np.zeros_like(v)
        np.add.at(grad.reshape(-1), view(np.arange(v.size)), g)
        return grad

    g = np.random.default_rng(7).standard_normal(np.shape(view(x)))
    result = check_gradient(view, backward, x, g)
    assert result.passed
    assert same_bits(x, before)


def test_forward_that_scales_its_input_in_place_is_reported_as_mutating():
    x = np.array([0.5, -1.0, 2.0])
    before = x.copy()

    def forward(v):
        v *= 2
        return v

    result = check_gradient(forward, lambda g, v: 2 * g, x, np.ones(3), raise_on_failure=False)
    assert not result.passed
    assert result.input_mutated
    assert same_bits(x, before)


def test_a_mutating_forward_fails_even_when_the_numbers_agree():
    # The forward zeroes x[-1] in place; tanh'(0) = 1 is then what both sides
    # see, so only the mutation check can catch it.
    x = np.array([0.3, -0.2, 0.7])
    before = x.copy()

    def forward(v):
        out = np.tanh(v)
        v[-1] = 0.0
        return out

    result = check_gradient(forward, tanh_backward, x, np.ones(3), raise_on_failure=False)
    assert result.input_mutated
    assert not result.passed
    with pytest.raises(GradientCheckError, match="modified"):
        check_gradient(forward, tanh_backward, x, np.ones(3))
    assert same_bits(x, before)


def test_a_clean_forward_is_not_reported_as_mutating():
    x = np.array([0.3, -0.2, 0.7])
    assert not check_gradient(tanh, tanh_backward, x, np.ones(3)).input_mutated


@pytest.mark.parametrize(
    "make_x",
    [
        lambda a: a.T,  # Fortran-ordered: what a transpose hands you
        lambda a: np.asfortranarray(a),
        lambda a: np.moveaxis(a.reshape(2, 3, 4), 0, -1),
        lambda a: a[:, ::2],
    ],
    ids=["transposed", "fortran", "moved-axis", "strided"],
)
def test_non_contiguous_inputs_are_perturbed_one_element_at_a_time(make_x):
    # x**2 has gradient 2x wherever the array's memory layout puts x.
    x = make_x(np.random.default_rng(8).standard_normal((4, 6)))
    before = x.copy()
    np.testing.assert_allclose(numerical_gradient(cube, x, np.ones(x.shape)), 3 * x**2, rtol=1e-6, atol=1e-9)
    result = check_gradient(lambda v: v**2, lambda g, v: 2 * g * v, x, np.ones(x.shape))
    assert result.passed
    assert same_bits(x, before)


# --- the step -------------------------------------------------------------------------------


def test_realised_step_is_the_difference_of_the_stored_values():
    x = np.array([-0.5], np.float32)
    result = check_gradient(lambda v: 2 * v, lambda g, v: 2 * g, x, np.ones(1), eps=1e-5)
    realised = float(np.float32(-0.5) + np.float32(1e-5)) - float(np.float32(-0.5) - np.float32(1e-5))
    assert result.step[0] == realised
    assert result.step[0] != 2e-5
    assert result.step[0] == pytest.approx(2.0027e-5, rel=1e-4)
    # Dividing by the realised step is what makes a linear function come out exact.
    assert result.numerical[0] == 2.0


def neighbours(value, dtype):
    """The two values of `dtype` that bracket the real number `value`."""
    nearest = dtype(value)
    other = np.nextafter(nearest, dtype(np.inf if float(nearest) < value else -np.inf))
    return nearest, other


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@settings(max_examples=60, deadline=None)
@given(value=st.floats(-100, 100))
# In float16, cbrt(eps) rounded to float16 (0.09918) instead of 0.0992126 moves
# x - h = 0.0258 by more than one float16 spacing.
@example(value=0.125)
def test_default_step_is_cbrt_eps_times_max_one_abs_x(dtype, value):
    x = np.array([value], dtype)
    stored = float(x[0])
    h = float(np.cbrt(np.float64(np.finfo(dtype).eps))) * max(1.0, abs(stored))
    result = check_gradient(linear, linear_backward, x, np.ones(1))
    # The step is a difference of two values stored in x's dtype, one next to
    # x + h and one next to x - h (either neighbour: h itself may be rounded).
    assert result.step[0] in {float(a) - float(b) for a in neighbours(stored + h, dtype)
                              for b in neighbours(stored - h, dtype)}
    spacing = np.spacing(np.abs(neighbours(stored + h, dtype) + neighbours(stored - h, dtype)))
    assert abs(result.step[0] - 2 * h) <= 2 * float(np.max(spacing))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_step_shows_in_the_truncation_error_of_a_cubic(dtype):
    # At x = 0, ((0+h)^3 - (0-h)^3) / (2h) = h^2 exactly: the numerical gradient
    # of x**3 there reveals the half-step the checker used.
    h = float(np.cbrt(np.finfo(dtype).eps))
    numerical = numerical_gradient(cube, np.zeros(1, dtype), np.ones(1, dtype))
    assert numerical[0] == pytest.approx(float(dtype(h)) ** 2, rel=1e-5)


def test_explicit_eps_is_honoured():
    x = np.array([0.5, -1.5, 3.0])
    result = check_gradient(cube, cube_backward, x, np.ones(3), eps=1e-3, rtol=1e-2)
    np.testing.assert_allclose(result.step, 2e-3, rtol=1e-12)
    # The central difference of x**3 overshoots by exactly eps**2 (up to float64 rounding).
    np.testing.assert_allclose(result.numerical - 3 * x**2, 1e-6, rtol=1e-4)
    np.testing.assert_allclose(numerical_gradient(cube, x, np.ones(3), eps=1e-3), result.numerical)


def test_explicit_eps_differs_from_the_default():
    x = np.array([0.5])
    default = check_gradient(cube, cube_backward, x, np.ones(1))
    explicit = check_gradient(cube, cube_backward, x, np.ones(1), eps=1e-2, rtol=1e-1)
    assert explicit.step[0] == pytest.approx(2e-2, rel=1e-12)
    assert default.step[0] != pytest.approx(2e-2)


def test_eps_too_small_for_the_dtype_is_refused_naming_eps():
    x = np.array([1.0], np.float16)
    with pytest.raises(ValueError, match=r"\beps\b.*float16"):
        check_gradient(lambda v: 2 * v, lambda g, v: 2 * g, x, np.ones(1), eps=1e-5)
    with pytest.raises(ValueError, match=r"\beps\b.*float16"):
        numerical_gradient(lambda v: 2 * v, x, np.ones(1), eps=1e-5)


def test_forward_calls_are_counted():
    calls = 0

    def forward(v):
        nonlocal calls
        calls += 1
        return np.tanh(v)

    result = check_gradient(forward, tanh_backward, np.linspace(-1, 1, 7), np.ones(7))
    assert result.forward_calls == calls
    assert calls >= 2 * 7  # two evaluations per element at least


def test_numerical_gradient_returns_float64_of_x_shape():
    x = np.random.default_rng(9).standard_normal((2, 3)).astype(np.float32)
    g = np.random.default_rng(10).standard_normal((2, 3)).astype(np.float32)
    numerical = numerical_gradient(tanh, x, g)
    assert numerical.dtype == np.float64 and numerical.shape == x.shape
    np.testing.assert_allclose(numerical, tanh_backward(g.astype(np.float64), x.astype(np.float64)), rtol=1e-3,
                               atol=1e-5)


def test_zero_dimensional_input():
    # A scalar input is a valid array of shape (); pass and fail both need to work.
    x = np.float32(0.25)
    result = check_gradient(lambda v: 2 * v, lambda g, v: 2 * g, x, np.float32(1))
    assert result.passed and result.max_error_ratio <= 1
    with pytest.raises(GradientCheckError, match="gradient mismatch at index 0"):
        check_gradient(lambda v: 2 * v, lambda g, v: 3 * g, x, np.float32(1))


# --- bad input ------------------------------------------------------------------------------


X3 = np.array([0.1, 0.2, 0.3])
G3 = np.ones(3)


@pytest.mark.parametrize("eps", [0.0, -1e-5, math.nan, math.inf, -math.inf])
def test_bad_eps_is_refused_naming_eps(eps):
    with pytest.raises(ValueError, match=r"^eps\b"):
        check_gradient(linear, linear_backward, X3, G3, eps=eps)
    with pytest.raises(ValueError, match=r"^eps\b"):
        numerical_gradient(linear, X3, G3, eps=eps)


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value, error", [(-1e-3, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                                          ("0.001", TypeError), (True, TypeError)])
def test_bad_tolerances_are_refused_naming_them(name, value, error):
    with pytest.raises(error, match=rf"^{name}\b"):
        check_gradient(linear, linear_backward, X3, G3, **{name: value})


@pytest.mark.parametrize("grad_output", [np.ones(4), np.ones((3, 1)), np.float64(1.0)])
def test_grad_output_of_the_wrong_shape_is_refused(grad_output):
    with pytest.raises(ValueError, match=r"^grad_output\b.*shape"):
        check_gradient(linear, linear_backward, X3, grad_output)
    with pytest.raises(ValueError, match=r"^grad_output\b.*shape"):
        numerical_gradient(linear, X3, grad_output)


@pytest.mark.parametrize("bad", [lambda g, v: np.ones(4), lambda g, v: np.ones((3, 1)), lambda g, v: 1.0])
def test_backward_of_the_wrong_shape_is_refused(bad):
    with pytest.raises(ValueError, match=r"^backward\b.*shape"):
        check_gradient(linear, bad, X3, G3)


# The checker may subtract the two outputs before it looks for inf/NaN; numpy's
# warning about that arithmetic is not what this test is about.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["at x", "at a perturbed x"])
def test_non_finite_forward_output_is_refused_naming_forward(value, where):
    def forward(v):
        out = 2 * v
        if where == "at x" or not np.array_equal(v, X3):
            out[1] = value
        return out

    with pytest.raises(ValueError, match=r"^forward\b.*(non-finite|inf|NaN)"):
        check_gradient(forward, linear_backward, X3, G3)


def test_forward_changing_its_output_shape_is_refused():
    def forward(v):
        return 2 * v if np.array_equal(v, X3) else 2 * v[:2]

    with pytest.raises(ValueError, match=r"^forward\b.*shape"):
        check_gradient(forward, linear_backward, X3, G3)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex128])
def test_non_floating_x_is_refused_naming_x(dtype):
    x = np.ones(3, dtype)
    with pytest.raises(TypeError, match=r"^x must be a floating-point array"):
        check_gradient(linear, linear_backward, x, G3)
    with pytest.raises(TypeError, match=r"^x must be a floating-point array"):
        numerical_gradient(linear, x, G3)


# --- the "Done when" numbers ---------------------------------------------------------


@pytest.mark.parametrize("forward_kind", ["seeded", "fixed_mask"])
def test_original_test_passes_honestly_at_the_original_tolerances(forward_kind):
    x = np.array(ORIGINAL_X, np.float32)
    _, mask = dropout(x, 0.3, seed=42)

    def forward(v):
        if forward_kind == "seeded":
            return dropout(v, 0.3, seed=42)[0]
        return v * mask * np.float32(1 / 0.7)

    result = check_gradient(forward, lambda g, v: dropout_backward(g, mask, 0.3), x, np.ones_like(x),
                            rtol=1e-3, atol=1e-6)
    assert result.passed
    assert result.max_error_ratio <= 0.01


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("size", [5, 100, 2000, 10_000])
def test_error_ratio_stays_small_across_sizes_and_p(size, p):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(np.float32)
    _, mask = dropout(x, p, seed=size + 1)
    scale = np.float32(1 / (1 - p))
    result = check_gradient(lambda v: v * mask * scale, lambda g, v: dropout_backward(g, mask, p), x,
                            np.ones_like(x))
    assert result.max_error_ratio <= 0.05
    if size <= 2000:
        # The seeded forward redraws its mask on every call; it must agree as well.
        seeded = check_gradient(lambda v: dropout(v, p, seed=size + 1)[0],
                                lambda g, v: dropout_backward(g, mask, p), x, np.ones_like(x))
        assert seeded.max_error_ratio <= 0.05


def test_an_infinite_analytical_gradient_fails_although_inf_is_within_an_infinite_tolerance():
    result = check_gradient(lambda v: v, lambda g, v: g * np.inf, np.ones(3), np.ones(3), raise_on_failure=False)
    assert not result.passed
    assert result.failing_indices.tolist() == [0, 1, 2]


def test_mode_fast_dispatches_to_the_projection_check_and_bad_modes_are_refused():
    from lib.gradcheck.fast import FastCheckResult

    x = np.linspace(-1.0, 1.0, 50)
    result = check_gradient(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones_like(x), mode="fast")
    assert isinstance(result, FastCheckResult) and result.passed
    assert result.forward_calls < 2 * x.size
    with pytest.raises(ValueError, match="mode must be one of 'dense', 'fast'"):
        check_gradient(np.tanh, lambda g, v: g, x, np.ones_like(x), mode="slow")


@pytest.mark.parametrize(("forward", "backward", "name"), [
    (None, lambda g, v: g, "forward"), (np.tanh, "not a function", "backward")])
def test_the_callables_are_checked_and_named(forward, backward, name):
    with pytest.raises(TypeError, match=f"{name} must be a callable"):
        check_gradient(forward, backward, np.ones(3), np.ones(3))


def test_a_forward_returning_nothing_is_named_as_such():
    with pytest.raises(TypeError, match="forward must return a real numeric array; it returned non-numeric None"):
        check_gradient(lambda v: None, lambda g, v: g, np.ones(3), np.ones(3))


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("raise_on_failure", "no", "raise_on_failure must be True or False"),
    ("probes", -1, "probes must be an integer >= 0"),
    ("strict", "yes", "strict must be True or False"),
    ("probe_seed", -2, r"probe_seed must be an integer \[0, ")])
def test_flags_and_counts_are_validated(keyword, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        check_gradient(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), np.ones(3), np.ones(3), **{keyword: value})


def test_fast_mode_still_needs_at_least_one_projection():
    with pytest.raises(ValueError, match="probes must be an integer >= 1"):
        check_gradient(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), np.ones(3), np.ones(3), mode="fast",
                       probes=0)


def test_a_step_that_overflows_the_dtype_is_refused_naming_x():
    x = np.array([np.finfo(np.float16).max], np.float16)
    with pytest.raises(ValueError, match=r"x\[0\] = 65504 is too close to the largest float16"):
        check_gradient(lambda v: v, lambda g, v: g, x, np.ones(1, np.float16))


# --- what cannot be checked is refused at the boundary, naming who returned what ----------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_x_is_refused_naming_the_element(bad):
    x = np.array([0.5, bad, 1.0])
    with pytest.raises(ValueError, match=r"x must be finite: x.flat\[1\]"):
        check_gradient(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones(3))


@pytest.mark.parametrize(("forward", "message"), [
    (lambda v: v.astype(np.complex128), "forward must return a real numeric array; it returned complex"),
    (lambda v: np.array(["a"] * v.size), "forward must return a real numeric array; it returned non-numeric"),
    (lambda v: np.array([object()] * v.size), "forward must return a real numeric array; it returned non-numeric"),
    (lambda v: "loss", "forward must return a real numeric array; it returned non-numeric str"),
])
def test_forward_outputs_that_cannot_be_checked_are_refused(forward, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        check_gradient(forward, lambda g, v: g, np.ones(3), np.ones(3))


@pytest.mark.parametrize(("backward", "error", "message"), [
    (lambda g, v: None, TypeError, "backward must return a real numeric array; it returned non-numeric None"),
    (lambda g, v: g.astype(np.complex64), TypeError, "backward must return a real numeric array; it returned complex"),
    (lambda g, v: np.float64(1.0), ValueError, "backward must return an array of x's shape (3,); it returned"),
    (lambda g, v: g[:2], ValueError, "backward must return an array of x's shape (3,); it returned an array"),
])
def test_backward_results_that_cannot_be_checked_are_refused(backward, error, message):
    with pytest.raises(error, match=re.escape(message)):
        check_gradient(lambda v: 2 * v, backward, np.ones(3), np.ones(3))


def test_a_random_probe_catches_a_backward_that_ignores_grad_output():
    x = np.linspace(-1, 1, 6)
    ignoring = lambda g, v: 2 * np.ones_like(v)  # noqa: E731
    assert check_gradient(lambda v: 2 * v, ignoring, x, np.ones(6), probes=0).passed
    result = check_gradient(lambda v: 2 * v, ignoring, x, np.ones(6), raise_on_failure=False)
    assert not result.passed and len(result.probe_results) == 1
    assert "for random grad_output 1 of 1" in result.report().splitlines()[0]
    correct = check_gradient(lambda v: 2 * v, lambda g, v: 2 * g, x, np.ones(6), probes=3)
    assert correct.forward_calls == 2 * 6 + 1  # probes cost no forward call


def test_only_elements_that_fail_the_plain_rule_pay_for_the_noise_term():
    x = np.linspace(-1, 1, 6)
    wrong_at_2 = lambda g, v: np.where(np.arange(6) == 2, 3.0, 2.0) * g  # noqa: E731
    result = check_gradient(lambda v: 2 * v, wrong_at_2, x, np.ones(6), probes=0, raise_on_failure=False)
    # 2 per element and 1 at x, then element 2 again (2 calls; float64 x is not re-measured in float64),
    # then at h0 / 2 (both points, and x again to see forward repeat itself; y0 is the call at x), where
    # its slope has settled at 2: converged elsewhere
    assert result.forward_calls == 2 * 6 + 1 + 2 + 3
    assert [(r.index, r.k, r.verdict) for r in result.smaller_steps] == [(2, 1, "converged elsewhere")]
    assert np.count_nonzero(result.noise) == 1 and result.noise[2] > 0


def test_probes_are_seeded_and_repeatable():
    x = np.linspace(-1, 1, 6)
    runs = [check_gradient(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones(6), probes=3, probe_seed=s)
            for s in (5, 5, 6)]
    assert np.array_equal(runs[0].probe_results[2].analytical, runs[1].probe_results[2].analytical)
    assert not np.array_equal(runs[0].probe_results[0].analytical, runs[2].probe_results[0].analytical)


@pytest.mark.parametrize("mode", ["fast", "diagnose"])
@pytest.mark.parametrize(("forward", "backward", "x", "error", "message"), [
    (np.tanh, lambda g, v: g, np.array([1.0, np.nan]), ValueError, "x must be finite: x.flat[1] = nan"),
    (lambda v: v.astype(complex), lambda g, v: g, np.ones(2), TypeError, "forward must return a real numeric"),
    (lambda v: None, lambda g, v: g, np.ones(2), TypeError, "forward must return a real numeric array; it returned"),
    (np.tanh, lambda g, v: g.astype(complex), np.ones(2), TypeError, "backward must return a real numeric array"),
    (np.tanh, lambda g, v: None, np.ones(2), TypeError, "backward must return a real numeric array"),
])
def test_fast_mode_and_diagnose_refuse_the_same_bad_values(mode, forward, backward, x, error, message):
    from lib.diagnose import diagnose
    from lib.gradcheck.fast import check_gradient_fast

    run = check_gradient_fast if mode == "fast" else diagnose
    with pytest.raises(error, match=re.escape(message)):
        run(forward, backward, x, np.ones(2))
