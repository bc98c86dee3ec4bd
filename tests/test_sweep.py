"""The blocked forward calls of the dense check: same numbers, fewer costs, batched forwards."""

from __future__ import annotations

import numpy as np
import pytest

from lib.gradcheck import check_gradient, sweep


def masked_case(n: int, dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    scale = ((rng.random(n) > 0.3) / 0.7).astype(dtype)
    return (lambda a: a * scale), (lambda g, a: g * scale), x, np.ones(n, dtype)


def test_an_element_measured_alone_gets_the_slope_it_gets_in_a_full_check():
    from lib.gradcheck.dense import confirm_elements

    w = np.random.default_rng(3).standard_normal((40, 40)).astype(np.float32)
    x = np.random.default_rng(4).standard_normal(40).astype(np.float32)
    g = np.random.default_rng(5).standard_normal(40).astype(np.float32)
    full = check_gradient(lambda a: np.tanh(w @ a), lambda gg, a: w.T @ (gg * (1 - np.tanh(w @ a) ** 2)), x, g)
    picked = [3, 17, 39]
    numerical, _, step, _ = confirm_elements(lambda a: np.tanh(w @ a), x, g, full.analytical, picked,
                                             rtol=1e-3, atol=1e-6, out_dtype=np.float32)
    np.testing.assert_array_equal(numerical, full.numerical[picked])
    np.testing.assert_array_equal(step, full.step[picked])


def test_only_the_outputs_that_moved_are_differenced_and_the_slopes_are_exact():
    # Two outputs that differ by one ulp of a large value: a float32 subtraction is exact here,
    # and so must be the slope; the unmoved output's huge value must not leak into the sum.
    y_plus = np.array([1e30, 1.0, 3.0], dtype=np.float32)
    y_minus = np.array([1e30, np.nextafter(np.float32(1.0), np.float32(0)), 3.0], dtype=np.float32)
    grads = np.array([[1.0, 2.0, 5.0]])
    values, sums = sweep.contract(y_plus, y_minus, grads, np.abs(grads))
    assert values.tolist() == [2.0 * (1.0 - float(y_minus[1]))]
    assert sums.tolist() == [2.0 * (1.0 + float(y_minus[1]))]
    with pytest.raises(ValueError, match="non-finite"):
        sweep.contract(np.array([np.inf, 1.0]), np.array([np.inf, 0.5]), np.ones((1, 2)), None)


@pytest.mark.parametrize("k", [1, 3, 7, 64, 1000])
def test_a_batched_forward_gives_the_same_slopes_in_fewer_calls(k):
    forward, backward, x, g = masked_case(100)
    plain = check_gradient(forward, backward, x, g)
    batched = check_gradient(forward, backward, x, g, batch=k)  # a * scale broadcasts over a stack
    np.testing.assert_allclose(batched.numerical, plain.numerical, rtol=1e-15)  # summed whole-row
    assert batched.passed
    assert batched.forward_calls == 2 * -(-100 // k) + 1
    assert plain.forward_calls == 2 * 100 + 1


def test_a_batched_forward_sees_stacks_of_at_most_k_perturbed_copies_of_x():
    forward, backward, x, g = masked_case(10, np.float64)
    shapes = []

    def recording(stack):
        shapes.append(stack.shape)
        assert np.count_nonzero(stack != x) <= stack.shape[0]  # one moved element per row
        return forward(stack)

    check_gradient(recording, backward, x, g, batch=4)
    assert shapes[0] == (1, 10)  # the first call: a stack of one, x itself
    assert sorted(set(shapes[1:])) == [(2, 10), (4, 10)]  # 10 = 4 + 4 + 2


def test_batch_is_checked_at_the_boundary():
    forward, backward, x, g = masked_case(5)
    with pytest.raises(ValueError, match="batch must be an integer >= 1; got 0"):
        check_gradient(forward, backward, x, g, batch=0)
    with pytest.raises(TypeError, match="batch must be an integer"):
        check_gradient(forward, backward, x, g, batch=2.5)
    with pytest.raises(ValueError, match="batch applies to mode='dense'"):
        check_gradient(forward, backward, x, g, batch=2, mode="fast")


def test_a_forward_that_does_not_take_stacks_is_told_what_it_was_given():
    w = np.random.default_rng(1).standard_normal((5, 5))
    x = np.ones(5)
    with pytest.raises(ValueError) as raised:
        check_gradient(lambda a: w @ a, lambda g, a: w.T @ g, x, np.ones(5), batch=3)
    assert "calls forward with a stack of inputs" in "\n".join(getattr(raised.value, "__notes__", []))
    with pytest.raises(ValueError, match=r"one output per input, \(k, \*y.shape\)"):
        check_gradient(lambda s: np.sum(s), lambda g, a: g * np.ones_like(a), x, np.float64(1.0), batch=3)


def test_outputs_that_are_views_or_reused_buffers_are_copied_when_returned():
    x = np.linspace(-1, 1, 50)
    assert check_gradient(lambda a: a, lambda g, a: g, x, np.ones(50)).passed  # the input itself
    buffer = np.empty(50)

    def reusing(a):
        np.multiply(a, 2.0, out=buffer)
        return buffer

    assert check_gradient(reusing, lambda g, a: 2 * g, x, np.ones(50)).passed


def test_a_forward_that_changes_its_output_dtype_is_differenced_in_float64():
    x = np.linspace(-1, 1, 40).astype(np.float32)
    calls = []

    def flipping(a):
        calls.append(1)
        out = a * np.float32(3)
        return out if len(calls) % 2 else out.astype(np.float64)

    result = check_gradient(flipping, lambda g, a: 3 * g, x, np.ones(40, np.float32))
    assert result.passed, result.report()

