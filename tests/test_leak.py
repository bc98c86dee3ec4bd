"""lib.leak: a checker that leaks its perturbations, and where that matters."""

import numpy as np
import pytest

from lib.dropout import dropout, dropout_backward
from lib.leak import (
    CHECKERS,
    LEAKS,
    central_differences,
    drift,
    drifted_point,
    error_over_tolerance,
    error_vs_step,
    first_crossing,
    gradient_at_drifted_points,
    leak_slopes,
    predicted_crossing,
    quadratic_form,
    replay_with_checker,
    softmax,
    softmax_loss,
)
from lib.replica import ORIGINAL_VALUES, REPORTED, matches_reported, replay_original_test

X32 = np.array(ORIGINAL_VALUES, dtype=np.float32)


def _dropout(dtype=np.float32):
    x = np.array(ORIGINAL_VALUES, dtype=dtype)
    _, mask = dropout(x, 0.3, seed=42)
    return x, (lambda z: dropout(z, 0.3, seed=42)[0]), (lambda z: dropout_backward(np.ones_like(z), mask, 0.3))


def test_leaking_checker_leaves_each_element_at_x_minus_eps():
    x = X32.copy()
    run = central_differences(lambda z: 2 * z, x, np.ones(5), 1e-5, restore=False)
    expected = X32 - np.float32(1e-5)
    assert np.array_equal(x, expected)  # the caller's own array was changed
    assert np.array_equal(run.x_after, expected) and np.array_equal(run.x_before, X32)
    assert run.changed_caller
    assert run.drift[0] == pytest.approx(-1.001358e-5, rel=1e-6)
    assert np.array_equal(drifted_point(X32, 5, 1e-5), expected)


def test_restoring_checker_leaves_the_caller_unchanged_even_when_forward_raises():
    x = X32.copy()
    run = central_differences(lambda z: 2 * z, x, np.ones(5), 1e-5, restore=True)
    assert np.array_equal(x, X32) and not run.changed_caller
    assert not np.any(run.drift)
    calls = []

    def failing(z):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return 2 * z

    with pytest.raises(RuntimeError):
        central_differences(failing, x, np.ones(5), 1e-5, restore=True)
    assert np.array_equal(x, X32)


def test_leak_is_bitwise_harmless_for_dropout():
    x, forward, _ = _dropout()
    honest = central_differences(forward, x.copy(), np.ones(5), 1e-5, restore=True)
    leaky = central_differences(forward, x.copy(), np.ones(5), 1e-5, restore=False)
    assert np.array_equal(honest.numerical, leaky.numerical)
    assert leaky.changed_caller and not honest.changed_caller


def test_leak_matches_the_replica_switch():
    leaked = replay_original_test(restore_input=False)
    restored = replay_original_test(restore_input=True)
    assert np.array_equal(leaked.result.numerical, restored.result.numerical)
    assert np.array_equal(leaked.x_after, drifted_point(leaked.x_before, 5, 1e-5))
    assert np.array_equal(restored.x_after, restored.x_before)


def test_realised_division_reproduces_the_analytical_value_for_dropout():
    x, forward, _ = _dropout()
    run = central_differences(forward, x.copy(), np.ones(5), 1e-5, divide_by="realised")
    nominal = central_differences(forward, x.copy(), np.ones(5), 1e-5, divide_by="nominal")
    assert f"{run.numerical[0]:.7f}" == "1.4285714"
    assert f"{nominal.numerical[0]:.7f}" == "1.4305115"
    assert run.width[0] == pytest.approx(2.0027e-5, rel=1e-4) and nominal.width[0] == 2e-5


def test_leaking_checker_differentiates_at_the_drifted_point_for_a_quadratic_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    forward, gradient, hessian = quadratic_form(a)
    x = rng.standard_normal(6)
    eps = 1e-3
    leaky = central_differences(forward, x.copy(), np.float64(1), eps, restore=False)
    honest = central_differences(forward, x.copy(), np.float64(1), eps, restore=True)
    assert np.allclose(leaky.numerical, gradient_at_drifted_points(gradient, x, eps), rtol=1e-8, atol=1e-10)
    assert np.allclose(honest.numerical, gradient(x), rtol=1e-8, atol=1e-10)
    # first order (exact for a quadratic): n_i - g_i = -eps * sum_{j<i} H_ij
    assert np.allclose(leaky.numerical - gradient(x), -eps * leak_slopes(hessian), rtol=1e-6, atol=1e-10)
    assert leaky.numerical[0] == pytest.approx(gradient(x)[0], rel=1e-9)


def test_softmax_gradient_and_hessian_match_finite_differences():
    w = np.array([0.3, -1.0, 2.0, 0.5])
    forward, gradient, hessian = softmax_loss(w)
    assert forward is softmax
    x = np.array([0.1, -0.4, 0.7, 0.2])
    assert softmax(x).sum() == pytest.approx(1.0)
    h = 1e-6
    numeric_grad = np.array([(w @ softmax(x + h * e) - w @ softmax(x - h * e)) / (2 * h) for e in np.eye(4)])
    numeric_hess = np.array([(gradient(x + h * e) - gradient(x - h * e)) / (2 * h) for e in np.eye(4)]).T
    assert np.allclose(gradient(x), numeric_grad, atol=1e-9)
    assert np.allclose(hessian(x), numeric_hess, atol=1e-8)
    assert np.allclose(hessian(x), hessian(x).T)


def test_predicted_crossing_matches_the_measured_one():
    rng = np.random.default_rng(8)
    forward, gradient, hessian = quadratic_form(rng.standard_normal((5, 5)))
    x = np.array(ORIGINAL_VALUES)
    steps = np.logspace(-8, -1, 36)
    leaks = error_vs_step(forward, gradient, x, np.float64(1), steps, restore=False)
    restores = error_vs_step(forward, gradient, x, np.float64(1), steps, restore=True)
    predicted, index = predicted_crossing(hessian, gradient(x))
    assert index > 0
    assert first_crossing(steps, leaks) == pytest.approx(predicted, rel=0.05)
    assert np.all(restores < 1)  # without the leak a quadratic is differenced exactly, up to rounding
    assert np.array_equal(x, np.array(ORIGINAL_VALUES))


def test_no_coupling_means_no_crossing():
    assert predicted_crossing(np.eye(3), [1.0, 1.0, 1.0]) == (float("inf"), -1)
    assert np.isnan(first_crossing([1e-3, 1e-2], [0.1, 0.2]))


def _round_trip(x, eps):
    """(x + eps) - eps, each sum in float64 rounded to x's dtype: where an aliased checker leaves x."""
    up = (x.astype(np.float64) + eps).astype(x.dtype)
    return (up.astype(np.float64) - eps).astype(x.dtype)


def test_aliased_checker_evaluates_both_sides_at_the_same_point():
    x = X32.copy()
    run = central_differences(lambda z: 2 * z, x, np.ones(5), 1e-5, restore=False, leak="aliased",
                              divide_by="nominal")
    assert np.array_equal(run.numerical, np.zeros(5))  # both sides see the same x: no difference at all
    assert np.array_equal(run.at_plus, run.at_minus)
    assert np.array_equal(run.at_plus, _round_trip(X32, 1e-5).astype(np.float64))
    assert np.array_equal(x, _round_trip(X32, 1e-5)) and np.max(np.abs(run.drift)) < 1e-7
    assert run.leak == "aliased" and not run.restore
    realised = central_differences(lambda z: 2 * z, X32.copy(), np.ones(5), 1e-5, restore=False, leak="aliased")
    assert np.all(realised.width == 0) and np.all(np.isnan(realised.numerical))  # 0 / 0


def test_aliased_in_turn_checker_takes_a_one_sided_difference():
    x = X32.copy()
    nominal = central_differences(lambda z: 2 * z, x, np.ones(5), 1e-5, restore=False, leak="aliased-in-turn",
                                  divide_by="nominal")
    step = np.float32(1e-5)
    assert np.array_equal(nominal.at_plus, (X32 + step).astype(np.float64))
    assert np.array_equal(nominal.at_minus, _round_trip(X32, 1e-5).astype(np.float64))
    # (f(x + eps) - f(x)) / (2 eps): about half the slope of 2
    assert np.allclose(nominal.numerical, 1.0, rtol=2e-3) and not np.allclose(nominal.numerical, 2.0, rtol=0.1)
    realised = central_differences(lambda z: 2 * z, X32.copy(), np.ones(5), 1e-5, restore=False,
                                   leak="aliased-in-turn")
    assert np.allclose(realised.numerical, 2.0, rtol=1e-6)  # over the step it really took: a forward difference


def test_replayed_checkers_match_the_replica_bit_for_bit():
    for switches in ({}, {"seed": 0}, {"dtype": "float16"}, {"divide_by": "realised", "p": 0.5, "seed": 7}):
        for checker, restore_input in (("restores", True), ("saved", False)):
            mine = replay_with_checker(checker, **switches)
            replica = replay_original_test(restore_input=restore_input, **switches)
            assert np.array_equal(mine.result.numerical, replica.result.numerical, equal_nan=True), switches
            assert np.array_equal(mine.result.analytical, replica.result.analytical)
            assert np.array_equal(mine.x_after, replica.x_after) and np.array_equal(mine.x_before, replica.x_before)
            assert mine.result.passed == replica.result.passed


def test_only_the_checkers_that_evaluate_at_x_plus_and_minus_eps_give_the_reported_numbers():
    runs = {c: replay_with_checker(c) for c in CHECKERS}
    assert set(runs) == {"restores", *LEAKS}
    assert matches_reported(runs["restores"].result) and matches_reported(runs["saved"].result)
    assert runs["saved"].changed_caller and not runs["restores"].changed_caller
    i = REPORTED["index"]
    assert runs["aliased"].result.numerical[i] == 0.0 and not matches_reported(runs["aliased"].result)
    half = runs["aliased-in-turn"].result.numerical[i]
    assert f"{half:.7f}" == "0.7152557" and not matches_reported(runs["aliased-in-turn"].result)
    # the float32 round trip (x + eps) - eps moves 0.0 to -2.5e-13 and nothing else
    for name in ("aliased", "aliased-in-turn"):
        assert np.array_equal(runs[name].x_after, _round_trip(runs[name].x_before, 1e-5))
    assert runs["aliased-in-turn"].at_minus[i] == runs["aliased"].at_plus[i] == ORIGINAL_VALUES[i]


def test_error_over_tolerance_and_drift():
    ratio = error_over_tolerance([1.0, 0.0], [1.002, 0.0], rtol=1e-3, atol=0.0)
    assert ratio[0] == pytest.approx(0.002 / 1.002e-3) and ratio[1] == 0.0
    assert drift(np.float32([0.5]), np.float32([0.49999]))[0] == pytest.approx(-1.001358e-5, rel=1e-5)


def test_argument_checks():
    with pytest.raises(TypeError):
        central_differences(lambda z: z, [0.5, 1.0], np.ones(2), 1e-5)
    with pytest.raises(ValueError):
        central_differences(lambda z: z, X32.copy(), np.ones(5), 1e-5, divide_by="exact")
    with pytest.raises(ValueError):
        central_differences(lambda z: z, np.ones((4, 4))[::2, :3], np.ones((2, 3)), 1e-5)
    with pytest.raises(ValueError):
        quadratic_form(np.ones((2, 3)))
    with pytest.raises(ValueError, match="leak"):
        central_differences(lambda z: z, X32.copy(), np.ones(5), 1e-5, restore=False, leak="shallow")
    with pytest.raises(ValueError, match="does not restore"):
        central_differences(lambda z: z, X32.copy(), np.ones(5), 1e-5, restore=True, leak="aliased")
    with pytest.raises(ValueError, match="checker"):
        replay_with_checker("deep")
    with pytest.raises(ValueError, match="values"):
        replay_with_checker(values=())
