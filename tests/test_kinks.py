"""Kinks inside the default step: elements measured again at halving steps (docs/checking_at_kinks.md).

In float32 the default step h0 = cbrt(eps) * max(1, |x|) is about 4.9e-3, so a
relu input at 1e-4, an abs input at 1e-4, a max-pool near-tie 1e-4 apart, elu at
0 and smooth_l1 at |d| = beta all have their kink (or a jump in the second
derivative) inside the central difference. Correct backwards must pass, on
evidence, in dense and fast mode; backwards wrong at or near the kink must fail.
Expected steps are computed from the specification, not recorded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.gradcheck import GradientCheckError, check_gradient
from lib.gradcheck.kinks import K_MAX

H0_32 = float(np.cbrt(float(np.finfo(np.float32).eps)))  # the default step at |x| <= 1, as in float64


# --- the layers ----------------------------------------------------------------------------------


def relu(z):
    return np.maximum(z, z.dtype.type(0))


def relu_backward(g, z):
    return (g * (z > 0)).astype(z.dtype)


def relu_zeroing_small(g, z):  # wrong: also zeroes 0 < x < 0.01
    return (g * (z >= 0.01)).astype(z.dtype)


def absolute(z):
    return np.abs(z)


def abs_backward(g, z):
    return (g * np.sign(z)).astype(z.dtype)


def max_pool(width):
    """(forward, correct backward, backward that splits the gradient between near-ties) of a 1-D max-pool."""
    def forward(z):
        return z.reshape(-1, width).max(axis=1)

    def backward(g, z):
        blocks = z.reshape(-1, width)
        out = np.zeros_like(blocks)
        out[np.arange(blocks.shape[0]), blocks.argmax(axis=1)] = g
        return out.reshape(z.shape)

    def split(g, z):
        blocks = z.reshape(-1, width)
        near = blocks >= blocks.max(axis=1, keepdims=True) - z.dtype.type(2e-4)
        return (near * (g[:, None] / near.sum(axis=1, keepdims=True))).reshape(z.shape).astype(z.dtype)

    return forward, backward, split


def elu(z):
    return np.where(z > 0, z, np.expm1(z)).astype(z.dtype)


def elu_backward(g, z):
    return (g * np.where(z > 0, 1, np.exp(z))).astype(z.dtype)


def smooth_l1(target, beta=1.0):
    def forward(z):
        d = z - target
        return np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta).astype(z.dtype)

    def backward(g, z):
        d = z - target
        return (g * np.where(np.abs(d) < beta, d / beta, np.sign(d))).astype(z.dtype)

    return forward, backward


def ordinary(dtype, n=16, seed=1):
    """n inputs of standard normal size, none within 0.01 of 0."""
    x = np.random.default_rng(seed).standard_normal(n)
    return np.where(np.abs(x) < 0.01, 0.5, x).astype(dtype)


def relu_case(dtype):
    x = ordinary(dtype)
    x[3], x[9] = 1e-4, -1e-4
    return relu, relu_backward, x


def relu_at_zero_case(dtype):
    x = ordinary(dtype)
    x[5] = 0.0
    return relu, relu_backward, x


def abs_case(dtype):
    x = ordinary(dtype)
    x[3] = 1e-4
    return absolute, abs_backward, x


def pool_case(width):
    def case(dtype):
        forward, backward, _ = max_pool(width)
        x = np.random.default_rng(2).uniform(-1, 1, 16).astype(dtype)
        # A near-tie 1e-4 apart at small values: at outputs of about 0.3, four roundings of each
        # output (the noise bound) exceed rtol at any step below 1e-4, and the element is undecided.
        x[4:8] = [0.02, 0.0201, -0.5, -0.3] if width == 2 else [-0.6, 0.02, -0.3, 0.0201]
        return forward, backward, x
    return case


def elu_case(dtype):
    x = ordinary(dtype)
    x[3] = 0.0
    return elu, elu_backward, x


def smooth_l1_case(dtype):
    rng = np.random.default_rng(3)
    target = rng.standard_normal(16).astype(dtype)
    x = (target + 3 * rng.standard_normal(16)).astype(dtype)
    x[2], x[7] = target[2] + dtype(1.0), target[7] - dtype(1.0)  # |pred - target| = beta
    forward, backward = smooth_l1(target)
    return forward, backward, x


CORRECT = {
    "relu at +-1e-4": relu_case, "relu at 0": relu_at_zero_case, "abs at 1e-4": abs_case,
    "max-pool 2": pool_case(2), "max-pool 4": pool_case(4), "elu at 0": elu_case, "smooth_l1 at beta": smooth_l1_case,
}


def upstream(y, kind, seed=7):
    return np.ones_like(y) if kind == "ones" else np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)


# --- correct layers pass ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ones", "random"])
@pytest.mark.parametrize("mode", ["dense", "fast"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_a_correct_layer_with_a_kink_near_the_point_passes(name, dtype, mode, kind):
    forward, backward, x = CORRECT[name](dtype)
    result = check_gradient(forward, backward, x, upstream(forward(x), kind), mode=mode, raise_on_failure=False)
    assert result.passed, result.report()
    assert all(record.passed for record in result.smaller_steps)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_float32_needs_the_smaller_steps_and_a_plain_check_fails(name):
    forward, backward, x = CORRECT[name](np.float32)
    plain = check_gradient(forward, backward, x, np.ones_like(forward(x)), strict=True, raise_on_failure=False)
    assert not plain.passed  # the default step straddles the kink: what this stage is for
    result = check_gradient(forward, backward, x, np.ones_like(forward(x)), raise_on_failure=False)
    assert result.smaller_steps and {r.index for r in result.smaller_steps} >= set(plain.failing_indices.tolist())


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("name", ["relu at +-1e-4", "relu at 0", "max-pool 2"])
def test_fast_mode_passes_a_correct_kinked_layer_whatever_its_probes(name, seed):
    # Two kinked elements can cancel in grad_output's probes and show only in the random upstream
    # gradient's pair; every probe seed must still end in a pass (lib.gradcheck.reprobe).
    forward, backward, x = CORRECT[name](np.float32)
    for kind in ("ones", "random"):
        g = upstream(forward(x), kind, seed)
        result = check_gradient(forward, backward, x, g, mode="fast", raise_on_failure=False)
        assert result.passed, result.report()


# --- what the result says -----------------------------------------------------------------------


def expected_k(distance: float, h0: float) -> int:
    """The specification's k for relu at x = distance from its kink: the first halving below the
    distance (the central slope is then the true one), and one more to see two steps agree."""
    below = math.floor(math.log2(h0 / distance)) + 1
    return below + 1


def test_relu_near_its_kink_reports_the_step_it_needed():
    forward, backward, x = relu_case(np.float32)
    result = check_gradient(forward, backward, x, np.ones_like(x), probes=0)
    k = expected_k(1e-4, H0_32)
    assert k == 7  # the specification's table: h_6 = 7.7e-5 is the first below 1e-4, h_7 agrees with it
    assert [(r.index, r.k, r.verdict) for r in result.smaller_steps] == [(3, k, "converged"), (9, k, "converged")]
    for record in result.smaller_steps:
        assert record.step == H0_32 / 2**k
        assert record.width == pytest.approx(2 * H0_32 / 2**k, rel=1e-6)
        assert record.central == record.slope_minus == record.slope_plus == (1.0 if record.index == 3 else 0.0)
    # numerical is the converged slope, step the width it was measured with
    assert result.numerical[3] == 1.0 and result.numerical[9] == 0.0
    assert result.step[3] == result.smaller_steps[0].width
    report = result.report()
    assert "Smaller steps: 2 elements failed at the default step" in report
    assert "2 passed (0 as a subgradient), 0 failed" in report
    assert result.summary().endswith("; 2 elements measured at smaller steps")
    # forward calls: 2N at the default step and 1 at x (y0, reused), then for each of the two elements
    # 2 with the rounding sums, 2 in float64 (relu computes in float64), 3 per halving (both points, y0 again)
    assert result.forward_calls == 2 * x.size + 1 + 2 * (2 + 2 + 3 * k)


def test_relu_on_its_kink_passes_as_a_subgradient():
    for dtype in (np.float32, np.float64):
        forward, backward, x = relu_at_zero_case(dtype)
        result = check_gradient(forward, backward, x, np.ones_like(x), probes=0)
        (record,) = result.smaller_steps
        # k = 1 has no earlier one-sided slopes to have settled against; k = 2 does
        assert (record.index, record.k, record.verdict) == (5, 2, "subgradient")
        assert (record.slope_minus, record.slope_plus) == (0.0, 1.0)
        assert record.central == 0.5
        np.testing.assert_array_equal(result.subgradient_indices, [5])
        assert result.numerical[5] == 0.0  # the subgradient nearest to the analytical 0
        assert "subgradient (on a kink)" in result.report()
        assert "(1 passed as a subgradient)" in result.summary()


def test_elu_and_smooth_l1_converge_at_the_first_halving():
    for case in (elu_case, smooth_l1_case):
        forward, backward, x = case(np.float32)
        result = check_gradient(forward, backward, x, np.ones_like(forward(x)), probes=0)
        assert result.smaller_steps and all(r.k == 1 and r.verdict == "converged" for r in result.smaller_steps)


def test_an_element_that_passes_at_the_default_step_costs_no_extra_call():
    far = ordinary(np.float32)
    plain = check_gradient(relu, relu_backward, far, np.ones_like(far))
    assert plain.forward_calls == 2 * far.size + 1 and not plain.smaller_steps
    near = far.copy()
    near[3] = 1e-4
    kinked = check_gradient(relu, relu_backward, near, np.ones_like(near))
    k = expected_k(1e-4, H0_32)
    # only the kinked element pays: rounding sums, float64, and 3 per halving; y0 is the validation's call
    assert kinked.forward_calls - plain.forward_calls == 2 + 2 + 3 * k


def test_report_of_a_check_that_needs_no_smaller_step_is_unchanged():
    far = ordinary(np.float32)
    result = check_gradient(relu, relu_backward, far, np.ones_like(far))
    assert "Smaller steps" not in result.report() and "smaller steps" not in result.summary()


# --- backwards wrong at the kink fail -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["dense", "fast"])
@pytest.mark.parametrize("kind", ["ones", "random"])
def test_relu_that_zeroes_small_inputs_fails(mode, kind):
    _, _, x = relu_case(np.float32)
    g = upstream(x, kind)
    result = check_gradient(relu, relu_zeroing_small, x, g, mode=mode, raise_on_failure=False)
    assert not result.passed
    record = next(r for r in result.smaller_steps if r.index == 3)
    # converged to relu's slope 1, weighted by grad_output there
    assert (record.k, record.verdict, record.central) == (expected_k(1e-4, H0_32), "converged elsewhere",
                                                         float(g[3]))
    assert 3 in result.failing_indices
    assert "FAIL: converged elsewhere" in result.report()


@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("kind", ["ones", "random"])
def test_max_pool_that_splits_between_near_ties_fails(width, kind):
    forward, _, split = max_pool(width)
    _, _, x = pool_case(width)(np.float32)
    g = upstream(forward(x), kind)
    dense = check_gradient(forward, split, x, g, raise_on_failure=False)
    assert not dense.passed
    ties = [5, 7] if width == 4 else [4, 5]
    assert set(ties) <= set(dense.failing_indices.tolist())
    assert all(r.verdict == "converged elsewhere" for r in dense.smaller_steps if r.index in ties)
    if width == 2:
        # A probe that moves both near-tied elements the same way sees the split as right (the pair's
        # sum is); one that moves them apart flags it, and the element the search isolates fails. With
        # width 4 the screen's search can end on a passing neighbour first: fast mode's blind spot for
        # this bug, the same with or without the smaller steps.
        fast = check_gradient(forward, split, x, g, mode="fast", probes=8, raise_on_failure=False)
        assert not fast.passed and set(fast.failing_indices.tolist()) <= set(ties)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wrong", ["x1.002", "sign"])
def test_a_backward_wrong_everywhere_fails_within_a_couple_of_halvings(wrong, dtype):
    x = np.random.default_rng(0).standard_normal(32).astype(dtype)
    factor = 1.002 if wrong == "x1.002" else -1.0

    def backward(g, z):
        return (g * (1 - np.tanh(z) ** 2) * factor).astype(z.dtype)

    result = check_gradient(np.tanh, backward, x, np.ones_like(x), probes=0, raise_on_failure=False)
    assert not result.passed
    in_dtype = [r.k for r in result.smaller_steps if not r.in_float64]
    again = [r.k for r in result.smaller_steps if r.in_float64]
    assert max(in_dtype) <= 2
    # An element where float32's rounding bound stops the steps is halved again in float64, where a
    # smooth function's one-sided slopes agree once h |f''| < rtol |f'|: a few more halvings.
    assert max(again, default=0) <= 6 and (dtype == np.float32 or not again)
    # default step, y0, rounding sums, float64 (float32 only), at most 2 halvings (3 calls each) per
    # element, and for those halved again in float64 forward(x) once and at most 6 more halvings
    float64_calls = 2 * x.size if dtype == np.float32 else 0
    assert result.forward_calls <= (2 * x.size + 1 + 2 * x.size + float64_calls + 2 * 3 * x.size
                                    + bool(again) + 3 * sum(again))
    fast = check_gradient(np.tanh, backward, x, np.ones_like(x), mode="fast", raise_on_failure=False)
    assert not fast.passed


# --- the stage on its own ------------------------------------------------------------------------


def test_a_jump_at_the_point_is_undecided_and_fails():
    # a step function jumps at 0: its one-sided slopes grow like 1/h, never settle, and the
    # rounding stop or K_MAX ends the halving without a decision
    x = np.array([0.0, 0.5], np.float32)
    forward = lambda z: np.where(z >= 0, 1.0, 0.0).astype(z.dtype) + z  # noqa: E731
    result = check_gradient(forward, lambda g, z: g.astype(z.dtype), x, np.ones_like(x), probes=0,
                            raise_on_failure=False)
    assert not result.passed
    (record,) = result.smaller_steps
    assert record.index == 0 and not record.passed and record.k <= K_MAX


# --- hypothesis: inputs near kinks --------------------------------------------------------------


def near_kink_inputs(data, n):
    """float32 inputs of standard normal size with some placed 1e-5 to 1e-3 from 0, on either side.

    Not closer: within about rtol * h_k of a kink the one-sided slopes settle before the central one
    does, and the specification takes the point to be on the kink (either side's slope passes).
    """
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    x = np.random.default_rng(seed).standard_normal(n)
    x = np.where(np.abs(x) < 2e-3, 0.5, x)
    near = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True), label="near")
    for i in near:
        x[i] = data.draw(st.floats(1e-5, 1e-3), label="distance") * data.draw(st.sampled_from([-1, 1]))
    return x.astype(np.float32), near


@settings(max_examples=30, deadline=None)
@given(layer=st.sampled_from(["relu", "abs"]), mode=st.sampled_from(["dense", "fast"]), data=st.data())
def test_elementwise_kinks_pass_when_right_and_fail_when_one_is_flipped(layer, mode, data):
    x, near = near_kink_inputs(data, 12)
    forward, backward = (relu, relu_backward) if layer == "relu" else (absolute, abs_backward)
    g = upstream(x, data.draw(st.sampled_from(["ones", "random"])))
    result = check_gradient(forward, backward, x, g, mode=mode, raise_on_failure=False)
    assert result.passed, result.report()
    flipped_at = near[0]

    def flipped(grad, z):
        out = backward(grad, z)
        # relu: the other side's slope (1 <-> 0); abs: the sign
        out[flipped_at] = grad[flipped_at] - out[flipped_at] if layer == "relu" else -out[flipped_at]
        return out

    wrong = check_gradient(forward, flipped, x, g, mode="dense", raise_on_failure=False)
    assert not wrong.passed and flipped_at in wrong.failing_indices


@settings(max_examples=20, deadline=None)
@given(width=st.sampled_from([2, 4]), gap=st.floats(2e-4, 1e-3), base=st.floats(-0.05, 0.05), data=st.data())
def test_max_pool_near_ties_pass_when_right_and_fail_when_swapped(width, gap, base, data):
    forward, backward, _ = max_pool(width)
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    # Every other value 0.05 apart, below the near-tie: no accidental tie within the default step.
    x = (-0.2 - 0.05 * np.random.default_rng(seed).permutation(16)).astype(np.float32)
    window = data.draw(st.integers(0, 16 // width - 1), label="window")
    low, high = width * window, width * window + width - 1
    x[low], x[high] = np.float32(base), np.float32(base + gap)
    g = upstream(forward(x), data.draw(st.sampled_from(["ones", "random"])))
    mode = data.draw(st.sampled_from(["dense", "fast"]))
    assert check_gradient(forward, backward, x, g, mode=mode, raise_on_failure=False).passed

    def swapped(grad, z):  # the gradient given to the near-tie's smaller element
        out = backward(grad, z)
        out[low], out[high] = out[high], out[low]
        return out

    wrong = check_gradient(forward, swapped, x, g, raise_on_failure=False)
    assert not wrong.passed and {low, high} <= set(wrong.failing_indices.tolist())


# --- a backward that writes into grad_output and is wrong ---------------------------------------


def test_a_backward_that_writes_and_mismatches_is_named_for_both():
    # numpy-ml's dropout wrapper, issue #94 there: the backward scales grad_output in place by the
    # mask and forgets 1/(1-p); at p = 0.5 the 10 kept elements are off by 2x (about 1000 tolerances).
    mask = np.array([1, 0] * 10, np.float32)

    def forward(z):
        return z * mask / np.float32(0.5)

    def backward(g, z):
        g *= mask  # writes into grad_output
        return g

    x = np.random.default_rng(4).standard_normal(20).astype(np.float32)
    with pytest.raises(GradientCheckError) as raised:
        check_gradient(forward, backward, x, np.ones_like(x))
    head, worst = str(raised.value).splitlines()[0], raised.value.result.max_error_ratio
    assert "an input array was modified" in head and worst > 100
    assert f"the gradient mismatches at 10 of 20 elements (max error/tolerance {worst:.4g})" in head
    assert "wrote into grad_output" in str(raised.value)
    fast = check_gradient(forward, backward, x, np.ones_like(x), mode="fast", raise_on_failure=False)
    head = fast.report().splitlines()[0]
    assert "backward modified the array it was given" in head and "random projections" in head
    # a backward that only writes is named for the write alone, as before
    quiet = check_gradient(forward, lambda g, z: np.multiply(g, mask / np.float32(0.5), out=g), x, np.ones_like(x),
                           raise_on_failure=False)
    assert quiet.report().splitlines()[0] == (
        "Gradient check failed for float32: an input array was modified (see the last lines)")


def test_a_forward_that_does_not_repeat_itself_rarely_passes_at_smaller_steps(monkeypatch):
    # relu with a fresh dropout mask per call (p = 0.1, the backward scaled for the mean): the
    # element at 1e-4 reaches the halving steps, where the masks often agree by chance;
    # forward(x) called again at every step catches most of it.
    def passes(trials=200):
        rng = np.random.default_rng(3)

        def stochastic(z):
            return (np.maximum(z, 0) * (rng.random(z.shape) > 0.1) / 0.9).astype(z.dtype)

        x = np.array([1e-4, 0.5, 0.25], dtype=np.float32)
        return sum(check_gradient(stochastic, lambda g, z: g * (z > 0) / 0.9, x, np.ones_like(x), probes=0,
                                  raise_on_failure=False).passed for _ in range(trials))

    with_repeats = passes()
    monkeypatch.setattr("lib.gradcheck.kinks._repeats", lambda forward, work, y0: True)
    assert with_repeats <= 0.03 * 200 < 0.25 * 200 <= passes()


def test_the_report_names_a_forward_that_changed_between_calls():
    calls = iter(range(10**6))

    def drifting(z):  # relu, plus a term that changes on every call
        return np.maximum(z, 0) + np.float32(1e-3) * (next(calls) % 2)

    x = np.array([1e-4, 0.5], dtype=np.float32)
    result = check_gradient(drifting, lambda g, z: g * (z > 0), x, np.ones_like(x), probes=0,
                            raise_on_failure=False)
    assert not result.passed
    assert [(r.index, r.k, r.verdict) for r in result.smaller_steps] == [(0, 1, "forward(x) changed")]
    assert "FAIL: forward(x) changed between calls" in result.report()


@pytest.mark.parametrize("mode", ["dense", "fast"])
@pytest.mark.parametrize("base", [0.3, 1.5, -2.0])
def test_a_max_pool_near_tie_at_ordinary_values_is_decided_in_float64(base, mode):
    # A tie 1e-4 apart needs a step below 1e-4; there float32's bound on the outputs' rounding, four
    # roundings of each moved output, passes the tolerance at |x| ~ 0.3 and above, although a max-pool's
    # outputs are exact copies of x. The forward computes in float64, so the steps are measured again there.
    def pool(z):
        return z.reshape(-1, 2).max(axis=1)

    def backward(g, z, split=False):
        pairs = z.reshape(-1, 2)
        out = np.zeros_like(pairs)
        out[np.arange(pairs.shape[0]), pairs.argmax(axis=1)] = g
        if split:
            out[0] = g[0] / 2  # the near-tie shares its gradient: wrong, the larger one takes it all
        return out.reshape(z.shape)

    x = np.array([base + 1e-4, base, 0.7, -0.2], dtype=np.float32)
    g = np.ones(2, dtype=np.float32)
    right = check_gradient(pool, backward, x, g, mode=mode, raise_on_failure=False)
    assert right.passed
    assert {(r.index, r.verdict, r.in_float64) for r in right.smaller_steps} == {(0, "converged", True),
                                                                               (1, "converged", True)}
    assert "converged (in float64)" in right.report()
    split = check_gradient(pool, lambda g, z: backward(g, z, split=True), x, g, probes=0, raise_on_failure=False)
    assert not split.passed and {r.verdict for r in split.smaller_steps} == {"converged elsewhere"}


def test_a_forward_that_keeps_float32_leaves_the_near_tie_undecided_and_failing():
    # The Mojo checker's case: no float64 evaluation to fall back on, so rounding decides nothing.
    def pool32(z):
        return z.astype(np.float32).reshape(-1, 2).max(axis=1)

    def backward(g, z):
        pairs = z.reshape(-1, 2)
        out = np.zeros_like(pairs)
        out[np.arange(2), pairs.argmax(axis=1)] = g
        return out.reshape(z.shape)

    x = np.array([0.3 + 1e-4, 0.3, 0.7, -0.2], dtype=np.float32)
    result = check_gradient(pool32, backward, x, np.ones(2, dtype=np.float32), probes=0, raise_on_failure=False)
    assert not result.passed
    assert {(r.verdict, r.in_float64) for r in result.smaller_steps} == {("rounding", False)}
