"""Fast mode: random projections pass correct backwards, fail wrong ones, and localise faults.

Every function pair here is small and exact, so the dense mode can be run on
the same inputs as an oracle for the elements the fast mode reports.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.catalogue import by_name
from lib.diagnose import diagnose
from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.gradcheck import GradientCheckError, _realised_points, check_gradient, default_step, diagnosis_hint
from lib.gradcheck.fast import (
    DEFAULT_PROBES,
    FALSE_ALARM,
    FastCheckResult,
    _points,
    _random_half,
    check_gradient_fast,
    hoeffding_multiplier,
)
from lib.gradcheck.result import SLICE_HINT_SIZE

P = 0.3
SCALE = 1.0 / (1.0 - P)


# --- function pairs: (forward, backward, x, grad_output) -------------------------------------------


def dropout_case(n: int, dtype, seed: int = 7, *, wrong: str | None = None, x=None):
    """Seeded dropout (the mask is redrawn identically on every call) and its backward.

    wrong: None, or one of the classic mistakes: "no_scale" (missing 1/(1-p)),
    "inverted" (1 - mask), "sign" (negated), "other_mask" (a different seed).
    """
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal(n).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)
    _, mask = dropout(x, P, seed=seed)

    def forward(a):
        return dropout(a, P, seed=seed)[0]

    def backward(g, a):
        if wrong == "no_scale":
            return g * mask
        if wrong == "inverted":
            return dropout_backward(g, 1 - mask, P)
        if wrong == "sign":
            return -dropout_backward(g, mask, P)
        if wrong == "other_mask":
            return dropout_backward(g, dropout(a, P, seed=seed + 1)[1], P)
        return dropout_backward(g, mask, P)

    return forward, backward, x, grad_output


def dropout2d_case(dtype, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 3, 5)).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)
    _, mask = dropout2d(x, P, seed=seed)
    return (lambda a: dropout2d(a, P, seed=seed)[0],
            lambda g, a: dropout2d_backward(g, mask, P), x, grad_output)


def tanh_case(dtype, seed: int = 5, *, wrong: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 7)).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)

    def backward(g, a):
        y = np.tanh(a)
        return g * (1 - y) if wrong else g * (1 - y * y)

    return np.tanh, backward, x, grad_output


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_case(dtype, seed: int = 11, *, wrong: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 9)).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)

    def backward(g, a):
        y = softmax(a)
        if wrong:  # forgets the normalisation term of the Jacobian
            return y * g
        return y * (g - np.sum(g * y, axis=-1, keepdims=True))

    return softmax, backward, x, grad_output


def matmul_case(dtype, seed: int = 13, *, wrong: bool = False):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 8)).astype(dtype)
    x = rng.standard_normal((5, 8)).astype(dtype)
    grad_output = rng.standard_normal((5, 8)).astype(dtype)
    # Right: g @ W.T. Wrong: g @ W (same shape because W is square).
    return (lambda a: a @ w, lambda g, a: g @ (w if wrong else w.T), x, grad_output)


CORRECT = {
    "dropout": lambda dtype: dropout_case(200, dtype),
    "dropout2d": dropout2d_case,
    "tanh": tanh_case,
    "softmax": softmax_case,
    "matmul": matmul_case,
}

WRONG = {
    "dropout missing 1/(1-p)": lambda dtype: dropout_case(200, dtype, wrong="no_scale"),
    "dropout inverted mask": lambda dtype: dropout_case(200, dtype, wrong="inverted"),
    "dropout sign flip": lambda dtype: dropout_case(200, dtype, wrong="sign"),
    "dropout other mask": lambda dtype: dropout_case(200, dtype, wrong="other_mask"),
    "tanh 1 - y": lambda dtype: tanh_case(dtype, wrong=True),
    "softmax without normalisation": lambda dtype: softmax_case(dtype, wrong=True),
    "matmul W not W.T": lambda dtype: matmul_case(dtype, wrong=True),
}


# --- verdicts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_passes_correct_backward(name, dtype):
    forward, backward, x, grad_output = CORRECT[name](dtype)
    for seed in range(5):
        result = check_gradient_fast(forward, backward, x, grad_output, seed=seed)
        assert isinstance(result, FastCheckResult)
        assert result.passed
        assert np.all(result.probes_passed)
        assert result.forward_calls == 2 * DEFAULT_PROBES  # two per probe, nothing else
        assert not result.measured.any()
        assert result.report().startswith(f"Gradient check passed for {np.dtype(dtype)}")


def test_float16_dropout_passes():
    forward, backward, x, grad_output = dropout_case(64, np.float16)
    assert check_gradient_fast(forward, backward, x, grad_output).passed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(WRONG))
def test_fails_wrong_backward_and_names_elements_the_dense_mode_fails(name, dtype):
    forward, backward, x, grad_output = WRONG[name](dtype)
    with pytest.raises(GradientCheckError) as raised:
        check_gradient_fast(forward, backward, x, grad_output, seed=1)
    fast = raised.value.result
    assert not fast.passed
    # The report, then one line on how to ask why.
    assert str(raised.value).startswith(fast.report() + "\nWhy: lib.diagnose.diagnose(")
    failing = fast.failing_indices
    assert failing.size >= 1, fast.report()

    # fast mode judges the elements it names by the dense rule itself (rounding allowance included)
    dense = check_gradient(forward, backward, x, grad_output, raise_on_failure=False, probes=0)
    assert not dense.passed
    assert set(failing.tolist()) <= set(dense.failing_indices.tolist())
    # A localised element is measured exactly as the dense mode measures it, smaller steps included
    # (fast mode's `step` holds the probes' widths; measured_step the width the element was measured with).
    for field_name, dense_name in (("analytical",) * 2, ("numerical",) * 2, ("measured_step", "step"),
                                   ("tolerance",) * 2):
        fast_values = getattr(fast, field_name).ravel()[failing]
        dense_values = getattr(dense, dense_name).ravel()[failing]
        np.testing.assert_array_equal(fast_values, dense_values, err_msg=field_name)
    dense_records = {r.index: r for r in dense.smaller_steps}
    for record in fast.smaller_steps:
        assert record == dense_records[record.index]
    first = int(failing[0])
    assert fast.report().startswith(
        f"Gradient check failed for {np.dtype(dtype)}: gradient mismatch at index {first}")


def test_a_forward_that_redraws_its_mask_fails():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    draws = np.random.default_rng(99)  # advances on every forward call
    _, mask = dropout(x, P, seed=1)
    result = check_gradient_fast(lambda a: dropout(a, P, rng=draws)[0],
                                 lambda g, a: dropout_backward(g, mask, P), x, np.ones_like(x),
                                 raise_on_failure=False)
    assert not result.passed


def test_tolerance_admits_every_error_the_dense_rule_accepts():
    # A backward whose every element sits just inside the dense pass band, in
    # random directions: the dense mode passes it, so the fast mode must too.
    rtol, atol = 1e-3, 1e-6
    forward, _, x, grad_output = dropout_case(4000, np.float64)
    _, mask = dropout(x, P, seed=7)
    exact = dropout_backward(grad_output, mask, P)
    wobble = np.random.default_rng(4).choice([-1.0, 1.0], size=x.shape)
    # the band for grad_output, as a factor, so that the backward stays linear in its upstream
    # gradient (a random one then gets the same relative errors, inside its own band)
    factor = 1 + 0.95 * (atol / np.maximum(np.abs(exact), 1.0) + rtol) * wobble

    def skewed(g, a):
        return dropout_backward(g, mask, P) * factor

    # the plain rule with the caller's grad_output only: the one fast mode's tolerance derives from
    assert check_gradient(forward, skewed, x, grad_output, rtol=rtol, atol=atol, strict=True, probes=0).passed
    for seed in range(30):
        result = check_gradient_fast(forward, skewed, x, grad_output, rtol=rtol, atol=atol, seed=seed)
        assert result.passed


def test_hoeffding_multiplier_matches_the_false_alarm_budget():
    for probes in (1, 2, 8):
        lam = hoeffding_multiplier(probes)
        assert math.isclose(2 * probes * 2 * math.exp(-lam * lam / 2), FALSE_ALARM)


# --- the tolerance, pinned from both sides -----------------------------------------------------
#
# The tests below recompute the documented tolerance from scratch, with the
# documented false-alarm probability written out (1e-6), on float64 dropout:
# a linear forward, so the numerical side is exact up to rounding below 1e-6
# of T, and a planted fault's residual is |e_j| w_j to that accuracy. A
# tolerance looser or tighter by a few per cent (FALSE_ALARM changed by 2x
# either way moves lam by about 4 %) flips one of the verdicts.

DOCUMENTED_FALSE_ALARM = 1e-6


def documented_tolerance(analytical, width, probes: int, rtol: float = 1e-3, atol: float = 1e-6) -> float:
    """T = lam * ||t * w||_2 with t = (atol + rtol |a|) / (1 - rtol), lam = sqrt(2 ln(4k / 1e-6)).

    The rounding and accumulation terms of T are left out: for float64
    dropout they are below 1e-6 of it.
    """
    lam = math.sqrt(2.0 * math.log(4.0 * probes / DOCUMENTED_FALSE_ALARM))
    t = (atol + rtol * np.abs(np.asarray(analytical, dtype=np.float64).ravel())) / (1.0 - rtol)
    return lam * float(np.linalg.norm(t * np.asarray(width, dtype=np.float64).ravel()))


def exact_dropout(n: int, seed: int):
    forward, backward, x, grad_output = dropout_case(n, np.float64, seed=seed)
    width = _realised_points(x, default_step(x))[2]
    return forward, backward, x, grad_output, width


@pytest.mark.parametrize("probes", [1, 2, 5])
def test_probe_tolerance_is_the_documented_one(probes):
    forward, backward, x, grad_output, width = exact_dropout(3000, seed=1)
    result = check_gradient_fast(forward, backward, x, grad_output, probes=probes)
    expected = documented_tolerance(result.analytical, width, probes)
    np.testing.assert_allclose(result.probe_tolerance * result.probe_step, expected, rtol=1e-6)
    np.testing.assert_array_equal(result.probe_step, np.linalg.norm(width))


@pytest.mark.parametrize(("n", "seed", "probes"), [(50, 0, 2), (1000, 1, 2), (4000, 2, 2), (1000, 3, 1), (777, 4, 4)])
def test_a_planted_fault_is_found_on_either_side_of_the_documented_tolerance(n, seed, probes):
    forward, backward, x, grad_output, width = exact_dropout(n, seed)
    j = int(np.random.default_rng([seed, n]).integers(n))
    # The probes cross their tolerance at factor 1, but the screen against the rounding floor
    # sends the search after the element either way, and the dense rule fails it.
    for factor, fails in ((0.98, True), (1.02, True)):
        for sign in (1.0, -1.0):
            # T depends on the wrong element's own |a_j| too: solve |e_j| w_j = factor * T
            # by fixed-point iteration (T changes by well under 1 % with e_j).
            error = 0.0
            for _ in range(8):
                faulty_t = documented_tolerance(planted(backward, {j: error})(grad_output, x), width, probes)
                error = sign * factor * faulty_t / width[j]
            wrong = planted(backward, {j: error})
            faulty_t = documented_tolerance(wrong(grad_output, x), width, probes)
            assert abs(error) * width[j] / faulty_t == pytest.approx(factor, rel=1e-6)
            result = check_gradient_fast(forward, wrong, x, grad_output, probes=probes, seed=seed,
                                         raise_on_failure=False)
            assert result.passed is not fails, (factor, sign, result.summary())
            # |residual| is the same for every probe: e_j s_j w_j with s_j = +-1.
            ratios = result.probe_error_ratio
            np.testing.assert_allclose(ratios, abs(error) * width[j] / faulty_t, rtol=1e-6)
            if fails:
                assert result.failing_indices.tolist() == [j]


# --- the blind spot ----------------------------------------------------------------------------


def test_detection_threshold_is_twice_the_tolerance_over_the_step():
    forward, backward, x, grad_output, width = exact_dropout(2000, seed=5)
    result = check_gradient_fast(forward, backward, x, grad_output)
    expected = 2.0 * documented_tolerance(result.analytical, width, DEFAULT_PROBES) / width
    assert result.detection_threshold.shape == x.shape
    np.testing.assert_allclose(result.detection_threshold, expected, rtol=1e-6)
    assert result.max_detection_threshold == pytest.approx(float(expected.max()), rel=1e-6)
    # Shown in the one-line summary even though the check passed, and in the report.
    summary = result.summary()
    assert "\n" not in summary
    assert summary.startswith("PASS: ")
    assert summary.endswith(f"; a single-element error below {result.max_detection_threshold:.4g} can go unseen")
    assert f"a single-element error below {result.max_detection_threshold:.4g} can go unseen" in result.report()


def test_empty_input_has_no_blind_spot():
    x = np.zeros(0)
    result = check_gradient_fast(lambda a: a, lambda g, a: g, x, x)
    assert result.detection_threshold.shape == (0,)
    assert result.max_detection_threshold == 0.0


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 4096),
    dtype=st.sampled_from([np.float32, np.float64]),
    probes=st.integers(1, 3),
    above=st.floats(1.01, 3.0),
    negative=st.booleans(),
    data=st.data(),
)
def test_a_fault_just_above_the_detection_threshold_is_always_found(n, dtype, probes, above, negative, data):
    j = data.draw(st.integers(0, n - 1), label="fault index")
    seed = data.draw(st.integers(0, 2**32 - 1), label="probe seed")
    forward, backward, x, grad_output = dropout_case(n, dtype)
    clean = check_gradient_fast(forward, backward, x, grad_output, probes=probes, seed=seed)
    error = (-1.0 if negative else 1.0) * above * float(clean.detection_threshold.ravel()[j])
    result = check_gradient_fast(forward, planted(backward, {j: error}), x, grad_output, probes=probes, seed=seed,
                                 raise_on_failure=False)
    assert not result.passed
    assert result.failing_indices.tolist() == [j]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fault_well_below_the_guaranteed_threshold_is_found_by_the_screen(dtype):
    # A quarter of the threshold the full tolerance guarantees puts half of T into the residual,
    # which the probes' full tolerance accepts; the rounding floor does not, and the search
    # finds the element, which the dense rule fails by tens of tolerances.
    forward, backward, x, grad_output = dropout_case(1000, dtype)
    j = 637
    for seed in range(20):
        clean = check_gradient_fast(forward, backward, x, grad_output, seed=seed)
        error = 0.25 * float(clean.detection_threshold.ravel()[j])
        wrong = planted(backward, {j: error})
        result = check_gradient_fast(forward, wrong, x, grad_output, seed=seed, raise_on_failure=False)
        assert np.all(result.probe_error_ratio <= 1.0)
        assert not result.passed and result.failing_indices.tolist() == [j]
    dense = check_gradient(forward, wrong, x, grad_output, raise_on_failure=False)
    assert dense.failing_indices.tolist() == [j]
    assert dense.error_ratio.ravel()[j] > 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fault_within_the_dense_tolerance_passes_in_both_modes(dtype):
    forward, backward, x, grad_output = dropout_case(1000, dtype)
    j = 637
    a_j = float(backward(grad_output, x).ravel()[j])
    wrong = planted(backward, {j: 0.3 * (1e-6 + 1e-3 * abs(a_j))})
    assert check_gradient(forward, wrong, x, grad_output, raise_on_failure=False).passed
    for seed in range(5):
        assert check_gradient_fast(forward, wrong, x, grad_output, seed=seed, raise_on_failure=False).passed


def test_a_correct_backward_never_fails_across_many_seeds():
    forward, backward, x, grad_output = dropout_case(3000, np.float32)
    for seed in range(200):
        result = check_gradient_fast(forward, backward, x, grad_output, seed=seed, raise_on_failure=False)
        assert result.passed, result.summary()
        # Rounding alone stays far inside T.
        assert np.max(result.probe_error_ratio) < 0.05


# --- the failure message: the report and how to ask why ----------------------------------------


@pytest.mark.parametrize("wrong", ["no_scale", "inverted", "sign"])
def test_a_raised_failure_is_the_report_and_a_hint_with_no_hidden_calls(wrong):
    forward, backward, x, grad_output = dropout_case(100, np.float32, wrong=wrong)
    calls = []

    def counted(a):
        calls.append(1)
        return forward(a)

    with pytest.raises(GradientCheckError) as fast:
        check_gradient_fast(counted, backward, x, grad_output)
    result = fast.value.result
    hint = diagnosis_hint(x.size, result.failing_indices, dtype=x.dtype, failing=result.failing_indices.size)
    assert str(fast.value) == result.report() + "\n" + hint
    assert len(calls) == result.forward_calls


@pytest.mark.parametrize("name", ["missing-scale", "inverted-mask", "seedless-forward", "inplace-forward",
                                  "backward-scratch-x", "softmax-diagonal-only"])
def test_what_both_modes_catch_diagnose_names_by_its_primary_code(name):
    entry = by_name(name)
    dtype = entry.dtypes[0]
    for mode in ("dense", "fast"):
        # A fresh problem per mode: some forwards keep state between calls.
        with pytest.raises(GradientCheckError):
            check_gradient(*entry.build(dtype, 0), mode=mode, **entry.check)
    assert diagnose(*entry.build(dtype, 0), **entry.check).primary.code == entry.code


def test_above_the_slice_size_the_hint_points_at_the_localised_elements():
    n = SLICE_HINT_SIZE + 1
    forward, backward, x, grad_output = dropout_case(n, np.float32, seed=2)
    j = 1234
    with pytest.raises(GradientCheckError) as raised:
        check_gradient_fast(forward, planted(backward, {j: 30.0}), x, grad_output)
    last = str(raised.value).split("\n")[-1]
    assert last.startswith("Why: lib.diagnose.diagnose(forward, backward, x, grad_output)")
    # float32: a float64 pass too, and 3 to 8 calls for the one failing element
    assert f"around element(s) {j}" in last and f"at least {4 * n + 5 + 3} more forward calls" in last


def test_no_diagnosis_without_raising():
    forward, backward, x, grad_output = dropout_case(100, np.float32, wrong="no_scale")
    calls = []

    def counted(a):
        calls.append(1)
        return forward(a)

    result = check_gradient_fast(counted, backward, x, grad_output, raise_on_failure=False)
    assert not result.passed
    assert len(calls) == result.forward_calls


# --- what a probe measures ---------------------------------------------------------------------


def test_probe_uses_the_realised_direction_not_the_nominal_step():
    # Identity forward, float32 values whose +-1e-5 neighbours are unevenly
    # spaced (-0.5 is the original test's x[0]): numerical and analytical sides
    # agree to float64 rounding only if both use d = x+ - x- as stored.
    x = np.tile(np.array([-0.5, 0.2, 0.5, 1.0, 3.0], dtype=np.float32), 40)
    ones = np.ones_like(x)
    result = check_gradient_fast(lambda a: a, lambda g, a: g.astype(np.float64), x, ones, eps=1e-5)
    assert result.passed
    a, n = result.probe_analytical, result.probe_numerical
    assert np.all(np.abs(a - n) <= 1e-12 * np.abs(a).max())
    # The nominal step 2*eps*sqrt(N) would put them about 1e-3 apart.
    nominal = n * result.probe_step / (2e-5 * math.sqrt(x.size))
    assert np.all(np.abs(nominal - a) > 1e-4 * np.abs(a))
    assert np.all(result.step > 0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_perturbed_points_are_the_dense_modes(dtype, eps):
    # 70000 elements cross a block boundary of the block-wise computation.
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(70_000) * 10.0 ** rng.integers(-3, 3, 70_000)).astype(dtype)
    step = default_step(x) if eps is None else np.full(x.shape, eps)
    try:
        expected = _realised_points(x, step)
    except ValueError as too_small:  # a fixed eps below float16's spacing at |x| ~ 300
        with pytest.raises(ValueError, match=re.escape(str(too_small))):
            _points(x, eps)
        return
    for got, want in zip(_points(x, eps), expected, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_random_half_is_exactly_half():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 1001, 65_537):
        assert np.count_nonzero(_random_half(rng, n)) == n // 2


def test_original_replica_passes_at_the_original_tolerances():
    x = np.array([-0.5, 0.0, 0.2, 0.5, 1.0], dtype=np.float32)
    forward, backward, _, _ = dropout_case(5, np.float32, seed=42, x=x)
    result = check_gradient_fast(forward, backward, x, np.ones_like(x), rtol=1e-3, atol=1e-6, eps=1e-5)
    assert result.passed


def test_probes_are_seeded_by_the_checker_not_the_global_rng():
    forward, backward, x, grad_output = tanh_case(np.float64)
    # The legacy global RNG is used on purpose: the check must neither read nor advance it.
    np.random.seed(123)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    first = check_gradient_fast(forward, backward, x, grad_output, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.random.seed(999)  # noqa: NPY002
    again = check_gradient_fast(forward, backward, x, grad_output, seed=5)
    other = check_gradient_fast(forward, backward, x, grad_output, seed=6)
    np.testing.assert_array_equal(first.probe_analytical, again.probe_analytical)
    np.testing.assert_array_equal(first.probe_numerical, again.probe_numerical)
    assert not np.array_equal(first.probe_analytical, other.probe_analytical)


def test_never_modifies_x_and_tolerates_a_forward_returning_its_input():
    x = np.linspace(-2, 2, 50)
    keep = x.copy()
    result = check_gradient_fast(lambda a: a, lambda g, a: g, x, np.ones_like(x))
    assert result.passed
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("localise", [0, 3])
def test_a_forward_that_writes_to_its_input_is_reported(localise):
    x = np.linspace(-1, 1, 20)
    keep = x.copy()

    def forward(a):
        a *= 2.0
        return a.copy()

    result = check_gradient_fast(forward, lambda g, a: 2.0 * g, x, np.ones_like(x), localise=localise,
                                 raise_on_failure=False)
    assert result.input_mutated
    assert result.mutated_by == "forward"
    assert not result.passed
    np.testing.assert_array_equal(x, keep)
    # The headline names the mutation as the reason, not the probes it corrupted.
    assert result.report().startswith(
        "Gradient check failed for float64: forward modified the array it was given (input mutation)")
    assert "forward modified the array it was given" in result.summary()
    assert diagnose(forward, lambda g, a: 2.0 * g, x, np.ones_like(x)).primary.code == "input-mutation"


def test_a_backward_that_writes_to_its_input_is_the_headline_even_when_the_probes_pass():
    x = np.linspace(-1, 1, 20)

    def backward(g, a):
        a[:] = 0.0  # scribbles over its x
        return 2.0 * g

    result = check_gradient_fast(lambda a: 2.0 * a, backward, x, np.ones_like(x), raise_on_failure=False)
    assert np.all(result.probes_passed)
    assert not result.passed and result.mutated_by == "backward"
    assert result.report().startswith(
        "Gradient check failed for float64: backward modified the array it was given (input mutation)")
    assert diagnose(lambda a: 2.0 * a, backward, x, np.ones_like(x)).primary.code == "input-mutation"


def test_forward_reusing_its_output_buffer_is_copied_in_time():
    # A forward that writes every result into the same array: the check must
    # copy the first output before the second call overwrites it.
    rng = np.random.default_rng(2)
    x = rng.standard_normal(300)
    out = np.empty_like(x)

    def forward(a):
        np.tanh(a, out=out)
        return out

    result = check_gradient_fast(forward, lambda g, a: g * (1 - np.tanh(a) ** 2), x, np.ones_like(x))
    assert result.passed
    assert np.all(np.abs(result.probe_numerical) > 0)


def test_integer_grad_output_is_accepted_and_non_finite_refused():
    forward, backward, x, _ = tanh_case(np.float64)
    assert check_gradient_fast(forward, backward, x, np.ones(x.shape, dtype=np.int64)).passed
    with pytest.raises(ValueError, match="grad_output"):
        check_gradient_fast(forward, backward, x, np.full(x.shape, np.inf))


def test_nothing_measured_when_the_probes_pass():
    forward, backward, x, grad_output = dropout_case(1000, np.float32)
    result = check_gradient_fast(forward, backward, x, grad_output)
    assert not result.measured.any()
    assert np.all(np.isnan(result.numerical)) and np.all(np.isnan(result.tolerance))
    assert np.all(result.error_ratio == 0)
    assert result.step.shape == x.shape and np.all(result.step > 0)
    assert result.analytical.dtype == np.float64


def test_empty_input_passes_vacuously():
    x = np.zeros(0)
    assert check_gradient_fast(lambda a: a, lambda g, a: g, x, x).passed


# --- localisation ------------------------------------------------------------------------------


def planted(backward, faults: dict[int, float]):
    """backward, correct except that element j is off by faults[j]."""

    def wrong(g, a):
        out = np.array(backward(g, a), dtype=np.float64)
        for j, error in faults.items():
            out.reshape(-1)[j] += error
        return out

    return wrong


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 4096),
    dtype=st.sampled_from([np.float32, np.float64]),
    probes=st.integers(1, 3),
    magnitude=st.floats(4.0, 100.0),
    negative=st.booleans(),
    data=st.data(),
)
def test_localises_one_planted_fault_within_the_call_budget(n, dtype, probes, magnitude, negative, data):
    j = data.draw(st.integers(0, n - 1), label="fault index")
    seed = data.draw(st.integers(0, 2**32 - 1), label="probe seed")
    forward, backward, x, _ = dropout_case(n, dtype)
    grad_output = np.ones_like(x)
    error = -magnitude if negative else magnitude
    result = check_gradient_fast(forward, planted(backward, {j: error}), x, grad_output, probes=probes,
                                 seed=seed, raise_on_failure=False)
    assert result.failing_indices.tolist() == [j]
    # One pair of forward calls per halving; the second probe gives the first halving free.
    levels = math.ceil(math.log2(n)) - (1 if probes > 1 else 0)
    assert result.search_calls <= 2 * levels
    if probes > 1:
        assert result.search_calls <= 2 * math.log2(n)
    # the element alone, as the dense mode measures it, again in float64 when it fails, then y0 = forward(x)
    # and one halving (both points and y0 again), at which a linear forward's slope has settled away
    # from the wrong value
    assert result.detail_calls <= 4 + 1 + 3
    assert result.forward_calls == 2 * probes + result.search_calls + result.detail_calls
    assert result.error_ratio.ravel()[j] > 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(8, 4096),
    count=st.integers(2, 3),
    base=st.floats(4.0, 20.0),
    data=st.data(),
)
def test_localises_a_few_planted_faults(n, count, base, data):
    positions = data.draw(st.lists(st.integers(0, n - 1), min_size=count, max_size=count, unique=True),
                          label="fault indices")
    signs = data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=count, max_size=count), label="signs")
    seed = data.draw(st.integers(0, 2**32 - 1), label="probe seed")
    # |x| <= 1 gives every element the same step; errors base * 1, 2, 4 then
    # cannot cancel in any group (the largest exceeds the sum of the others).
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    forward, backward, x, _ = dropout_case(n, np.float64, x=x)
    faults = {j: s * base * 2.0**k for k, (j, s) in enumerate(zip(positions, signs, strict=True))}
    result = check_gradient_fast(forward, planted(backward, faults), x, np.ones_like(x), seed=seed,
                                 localise=count, raise_on_failure=False)
    assert sorted(result.failing_indices.tolist()) == sorted(positions)
    # each wrong element of this linear forward also costs one halving (3 calls), and the check one
    # y0 = forward(x)
    assert result.search_calls + result.detail_calls <= 2 * count * math.ceil(math.log2(n)) + 3 * count + 1


@pytest.mark.parametrize("probes", [1, 2])
def test_localises_one_fault_among_a_hundred_thousand(probes):
    n = 2**17 - 3  # not a power of two
    forward, backward, x, _ = dropout_case(n, np.float32, seed=2)
    j = int(np.random.default_rng(8).integers(n))
    result = check_gradient_fast(forward, planted(backward, {j: 30.0}), x, np.ones_like(x), probes=probes,
                                 raise_on_failure=False)
    assert result.failing_indices.tolist() == [j]
    if probes == 2:
        assert result.search_calls <= 2 * math.log2(n)
    assert result.search_calls <= 2 * math.ceil(math.log2(n))
    assert "gradient mismatch at index" in result.report()


def test_localise_zero_reports_the_probes_only():
    forward, backward, x, grad_output = dropout_case(100, np.float64, wrong="sign")
    result = check_gradient_fast(forward, backward, x, grad_output, localise=0, raise_on_failure=False)
    assert not result.passed
    assert result.forward_calls == 2 * DEFAULT_PROBES
    assert not result.measured.any()
    assert "a random projection of the gradient is off" in result.report()


def test_says_when_more_elements_are_wrong_than_it_localised():
    forward, backward, x, grad_output = dropout_case(500, np.float64, wrong="no_scale")
    result = check_gradient_fast(forward, backward, x, grad_output, localise=2, raise_on_failure=False)
    assert result.failing_indices.size == 2
    assert any("other elements are wrong too" in note for note in result.notes)


# --- bad input ---------------------------------------------------------------------------------


def _call_with(**changes):
    forward, backward, x, grad_output = dropout_case(10, np.float64)
    args = {"forward": forward, "backward": backward, "x": x, "grad_output": grad_output, **changes}
    return check_gradient_fast(args.pop("forward"), args.pop("backward"), args.pop("x"), args.pop("grad_output"),
                               **args)


@pytest.mark.parametrize(
    ("changes", "error", "name"),
    [
        ({"x": np.arange(10)}, TypeError, "x"),
        ({"grad_output": np.ones(3)}, ValueError, "grad_output"),
        ({"probes": 0}, ValueError, "probes"),
        ({"probes": 2.0}, TypeError, "probes"),
        ({"probes": True}, TypeError, "probes"),
        ({"rtol": -1e-3}, ValueError, "rtol"),
        ({"rtol": 1.0}, ValueError, "rtol"),
        ({"atol": float("nan")}, ValueError, "atol"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 1e-30}, ValueError, "eps"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": "a"}, TypeError, "seed"),
        ({"localise": -1}, ValueError, "localise"),
        ({"probe_dtype": "float32"}, ValueError, "probe_dtype"),
        ({"probe_dtype": "double precision"}, ValueError, "probe_dtype"),
        ({"forward": None}, TypeError, "forward"),
        ({"backward": 3}, TypeError, "backward"),
        ({"backward": lambda g, a: np.ones(4)}, ValueError, "backward"),
    ],
)
def test_bad_input_names_the_argument(changes, error, name):
    with pytest.raises(error, match=rf"\b{name}\b"):
        _call_with(**changes)


@pytest.mark.parametrize(
    ("forward", "says"),
    [
        (lambda a: (a * 2).astype(np.float32), "returned float32 for a float64 input"),
        (lambda a: a.astype(np.float32).astype(np.float64) * 2, "is a float32 number"),
    ],
    ids=["returns-float32", "casts-its-input"],
)
def test_float64_probes_refuse_a_forward_that_does_not_compute_in_float64(forward, says):
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"probe_dtype='float64' needs a forward that computes in float64.*{says}"):
        check_gradient_fast(forward, lambda g, a: 2 * g, x, np.ones_like(x), probe_dtype="float64")
    assert check_gradient_fast(forward, lambda g, a: 2 * g, x, np.ones_like(x)).passed


def test_float64_probes_leave_a_float64_check_as_it_was():
    forward, backward, x, grad_output = dropout_case(300, np.float64)
    plain = check_gradient_fast(forward, backward, x, grad_output)
    same = check_gradient_fast(forward, backward, x, grad_output, probe_dtype=np.float64)
    assert np.array_equal(plain.probe_numerical, same.probe_numerical) and same.probe_dtype == "float64"
    assert "probes measured in" not in same.report()


def test_probe_dtype_is_for_fast_mode():
    forward, backward, x, grad_output = dropout_case(10, np.float32)
    with pytest.raises(ValueError, match=r"probe_dtype applies to mode='fast'"):
        check_gradient(forward, backward, x, grad_output, probe_dtype="float64")


def test_non_finite_forward_output_is_refused():
    calls = []

    def forward(a):
        calls.append(1)
        return a if len(calls) == 1 else a / 0.0

    with np.errstate(divide="ignore", invalid="ignore"), pytest.raises(ValueError, match="non-finite"):
        _call_with(forward=forward)


# --- agreement with PyTorch (optional) ---------------------------------------------------------


def test_verdicts_agree_with_torch_fast_gradcheck():
    torch = pytest.importorskip("torch")
    forward, backward, x, _ = tanh_case(np.float64)
    _, wrong_backward, _, _ = tanh_case(np.float64, wrong=True)
    grad_output = np.ones_like(x)

    def as_torch_function(numpy_backward):
        class Wrapped(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                ctx.save_for_backward(t)
                return torch.from_numpy(forward(t.detach().numpy()))

            @staticmethod
            def backward(ctx, g):
                (t,) = ctx.saved_tensors
                return torch.from_numpy(np.asarray(numpy_backward(g.numpy(), t.detach().numpy())))

        return Wrapped.apply

    t = torch.from_numpy(x.copy()).requires_grad_(True)
    for numpy_backward, expected in ((backward, True), (wrong_backward, False)):
        fn = as_torch_function(numpy_backward)
        theirs = torch.autograd.gradcheck(lambda a, fn=fn: (fn(a) * 1.0).sum(), (t,), fast_mode=True,
                                          raise_exception=False)
        ours = check_gradient_fast(forward, numpy_backward, x, grad_output, raise_on_failure=False).passed
        assert theirs is expected
        assert ours is expected


@pytest.mark.parametrize("magnitude", [1e154, 1e200, 1e300])
def test_huge_magnitudes_are_checked_without_overflow(magnitude):
    x = np.array([1.0, -1.0, 0.5, 0.25]) * magnitude
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_gradient_fast(lambda v: 2 * v, lambda g, v: 2 * g, x, np.ones(4)).passed
        wrong = check_gradient_fast(lambda v: 2 * v, lambda g, v: 3 * g, x, np.ones(4), raise_on_failure=False)
    assert not wrong.passed


def test_a_step_past_the_largest_value_gets_the_dense_message():
    x = np.array([np.finfo(np.float64).max, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"x\[0\] = 1.79769e\+308 is too close to the largest float64 value"):
            check_gradient_fast(lambda v: v, lambda g, v: g, x, np.ones(2))


def test_an_empty_x_that_backward_writes_to_fails_and_raises_like_any_failure():
    x = np.zeros((0, 3))

    def backward(g, a):
        a.shape = (3, 0)  # an in-place change of an empty array: its shape
        return np.zeros((0, 3))

    with pytest.raises(GradientCheckError, match="modified the array it was given"):
        check_gradient_fast(lambda a: 2.0 * a, backward, x, np.zeros((0, 3)))


# --- what a probe costs and compares, by hand; how its blind spot grows ----------------------------


def _seeded_dropout(x, seed=42):
    """Seeded dropout of x (the same mask on every call), its backward, and all-ones grad_output."""
    mask = dropout(x, P, seed=seed)[1]
    return (lambda a: dropout(a, P, seed=seed)[0]), (lambda g, a: dropout_backward(g, mask, P)), x, np.ones_like(x)


@pytest.mark.parametrize("n", [5, 1000, 50_000])
@pytest.mark.parametrize("probes", [2, 3])
def test_fast_mode_costs_two_forward_calls_per_probe_whatever_n(n, probes):
    forward, backward, x, grad_output = _seeded_dropout(np.linspace(-2, 2, n, dtype=np.float32))
    calls = []

    def counted(a):
        calls.append(a.size)
        return forward(a)

    result = check_gradient(counted, backward, x, grad_output, mode="fast", probes=probes)
    assert len(calls) == result.forward_calls == 2 * probes
    assert calls == [n] * (2 * probes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [None, 1e-5])
def test_each_probe_is_a_dot_product_on_each_side_along_the_realised_step(dtype, eps):
    # Recompute every probe by hand along the direction the checker drew (read off the
    # points it evaluated): a . d, grad_output . (f(x+) - f(x-)) and the documented tolerance.
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, 40).astype(dtype)
    forward, backward, _, _ = _seeded_dropout(x)
    grad_output = rng.standard_normal(40).astype(dtype)
    seen = []

    def recording(a):
        seen.append(a.copy())  # x+ and x- share one buffer
        return forward(a)

    result = check_gradient_fast(recording, backward, x, grad_output, eps=eps)
    a = backward(grad_output, x).astype(np.float64)
    g = grad_output.astype(np.float64)
    half = default_step(x) if eps is None else np.full(x.shape, eps)
    lam = hoeffding_multiplier(result.probes)
    for k in range(result.probes):
        plus, minus = seen[2 * k], seen[2 * k + 1]
        s = np.sign(plus.astype(np.float64) - minus.astype(np.float64))
        assert np.array_equal(plus, (x.astype(np.float64) + half * s).astype(dtype))  # the dense mode's points
        d = plus.astype(np.float64) - minus.astype(np.float64)
        f_plus, f_minus = forward(plus).astype(np.float64), forward(minus).astype(np.float64)
        scale = result.probe_step[k]
        assert scale == pytest.approx(np.linalg.norm(d), rel=1e-12)
        assert result.probe_analytical[k] * scale == pytest.approx(a @ d, abs=1e-12 * np.sum(np.abs(a * d)))
        assert result.probe_numerical[k] * scale == pytest.approx(
            g @ (f_plus - f_minus), abs=1e-12 * np.sum(np.abs(g * (f_plus - f_minus))))
        t = (1e-6 + 1e-3 * np.abs(a)) / (1 - 1e-3)
        rounding = float(np.finfo(dtype).eps) * (np.linalg.norm(g * f_plus) + np.linalg.norm(g * f_minus))
        assert result.probe_tolerance[k] * scale == pytest.approx(lam * (np.linalg.norm(t * d) + rounding), rel=1e-6)


def test_the_blind_spot_grows_like_the_square_root_of_n():
    sizes = [100, 1000, 10_000]
    thresholds = []
    for n in sizes:
        x = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
        thresholds.append(check_gradient_fast(*_seeded_dropout(x)).detection_threshold[0])
    slope = np.polyfit(np.log(sizes), np.log(thresholds), 1)[0]
    assert 0.4 < slope < 0.6


def test_at_the_original_step_rounding_widens_the_blind_spot():
    x = np.array([-0.5, 0.0, 0.2, 0.5, 1.0], dtype=np.float32)  # the original test's values
    default = check_gradient_fast(*_seeded_dropout(x)).detection_threshold[0]
    original = check_gradient_fast(*_seeded_dropout(x), eps=1e-5).detection_threshold[0]
    assert original > 3 * default


def test_a_step_too_small_for_float16_is_refused_with_the_dense_message():
    x = np.array([-0.5, 0.0, 0.2, 0.5, 1.0], dtype=np.float16)
    with pytest.raises(ValueError, match=r"eps=1e-05 is too small for float16 at index 0"):
        check_gradient_fast(*_seeded_dropout(x), eps=1e-5)
    assert check_gradient_fast(*_seeded_dropout(x.astype(np.float32)), eps=1e-5).passed
