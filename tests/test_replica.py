"""Tests for lib.replica: the original failure, number for number, and every switch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lib import GradCheckResult, GradientCheckError, check_gradient, dropout, replay_original_test, run_original_test
from lib.replica import (
    ORIGINAL_VALUES,
    MojoRandom,
    dropout2d_values,
    fixed_check_gradient,
    mojo_random_float64,
    original_check_gradient,
    original_dropout,
)

ORIGINAL_LINE = "Gradient check failed for float32: gradient mismatch at index 0"
# The post-mortem's numbers for index 0 (docs/history.md).
REPORTED = {"analytical": 1.4285715, "numerical": 1.4305115, "difference": 0.0019400, "tolerance": 0.0014315}


def printed(value: float) -> float:
    """`value` as the original printed it: 7 decimal places."""
    return round(float(value), 7)


def distinct(masks) -> int:
    return len({np.asarray(m).tobytes() for m in masks})


# --- the original failure --------------------------------------------------------------------


@pytest.fixture(scope="module")
def original_failure() -> GradientCheckError:
    with pytest.raises(GradientCheckError) as caught:
        run_original_test()
    return caught.value


def test_first_line_is_exactly_the_original(original_failure):
    assert str(original_failure).splitlines()[0] == ORIGINAL_LINE


def test_reported_numbers_at_index_0(original_failure):
    result = original_failure.result
    assert printed(result.analytical[0]) == REPORTED["analytical"]
    assert printed(result.numerical[0]) == REPORTED["numerical"]
    assert printed(abs(result.analytical[0] - result.numerical[0])) == REPORTED["difference"]
    assert printed(result.tolerance[0]) == REPORTED["tolerance"]


def test_message_carries_the_reported_numbers(original_failure):
    message = str(original_failure)
    for number in ("1.4285715", "1.4305115", "0.0019400", "0.0014315"):
        assert number in message


def test_failing_indices_and_result(original_failure):
    result = original_failure.result
    assert isinstance(result, GradCheckResult)
    assert not result.passed
    assert result.dtype == "float32"
    np.testing.assert_array_equal(result.failing_indices, [0, 3])
    assert (result.rtol, result.atol) == (1e-3, 1e-6)
    # Divided by the nominal 2 * eps, as the original did.
    np.testing.assert_array_equal(result.step, 2e-5)


def test_the_failure_is_the_nominal_step_alone(original_failure):
    # Every gradient error at index 0 is the ratio realised / nominal step:
    # mask and scale agree, so the only difference is the denominator.
    result = original_failure.result
    realised = float(np.float32(-0.5) + np.float32(1e-5)) - float(np.float32(-0.5) - np.float32(1e-5))
    assert result.numerical[0] / result.analytical[0] == pytest.approx(realised / 2e-5, rel=1e-6)


def test_dividing_by_the_realised_step_passes():
    result = run_original_test(divide_by="realised")
    assert result.passed
    assert result.failing_indices.size == 0
    # x[0] + eps is computed in float64 and rounded to float32, as Mojo wrote it
    assert result.step[0] == float(np.float32(-0.5 + 1e-5)) - float(np.float32(-0.5 - 1e-5))
    # stored in float32 like the original's numerical gradient: equal to the analytical one
    assert result.numerical[0] == result.analytical[0] == float(np.float32(1 / 0.7))


def test_raise_on_failure_false_returns_the_result():
    result = run_original_test(raise_on_failure=False)
    assert isinstance(result, GradCheckResult) and not result.passed


def test_replay_never_raises_on_a_failed_check():
    run = replay_original_test()
    assert not run.passed
    assert run.message.splitlines()[0] == ORIGINAL_LINE
    assert len(run.forward_masks) == 2 * 5  # x + eps and x - eps for each element


def test_the_run_is_repeatable():
    first, second = replay_original_test(), replay_original_test()
    np.testing.assert_array_equal(first.result.numerical, second.result.numerical)
    np.testing.assert_array_equal(first.test_mask, second.test_mask)


# --- each switch does what it says --------------------------------------------------------------


def test_rng_reseed_gives_the_test_mask_to_every_forward():
    run = replay_original_test(rng="reseed")
    assert all(np.array_equal(mask, run.test_mask) for mask in run.forward_masks)


def test_rng_global_draws_a_new_mask_in_every_forward():
    run = replay_original_test(rng="global")
    assert distinct(run.forward_masks) > 1
    assert any(not np.array_equal(mask, run.test_mask) for mask in run.forward_masks)
    assert not run.passed


def test_seed_zero_does_not_seed_so_masks_change_between_calls():
    # The trap: seed=0 meant "do not seed", so even rng="reseed" draws on.
    run = replay_original_test(seed=0, rng="reseed")
    assert distinct(run.forward_masks) > 1
    seeded = replay_original_test(seed=42, rng="reseed")
    assert distinct(seeded.forward_masks) == 1


@pytest.mark.parametrize("rng", ["reseed", "global"])
def test_fixed_mask_forward_reuses_the_test_mask(rng):
    run = replay_original_test(forward="fixed_mask", rng=rng)
    assert len(run.forward_masks) == 10
    assert all(np.array_equal(mask, run.test_mask) for mask in run.forward_masks)


def test_fixed_mask_forward_removes_the_global_rng_failure():
    # With a fixed mask the forward no longer depends on the RNG, so "global"
    # fails exactly like "reseed": on the step, not on the mask.
    fixed_global = replay_original_test(forward="fixed_mask", rng="global").result
    reseed = replay_original_test().result
    np.testing.assert_array_equal(fixed_global.numerical, reseed.numerical)


def test_captured_backward_mask_is_the_test_mask():
    for rng in ("reseed", "global"):
        run = replay_original_test(backward_mask="captured", rng=rng)
        np.testing.assert_array_equal(run.backward_mask, run.test_mask)


def test_rebound_backward_mask_with_reseed_is_still_the_test_mask():
    # Rebinding with the same seed draws the same mask: late binding is harmless here.
    run = replay_original_test(backward_mask="rebound", rng="reseed")
    np.testing.assert_array_equal(run.backward_mask, run.test_mask)


def test_rebound_backward_mask_with_global_rng_is_a_different_mask():
    run = replay_original_test(backward_mask="rebound", rng="global")
    assert not np.array_equal(run.backward_mask, run.test_mask)
    np.testing.assert_allclose(run.result.analytical, run.backward_mask / np.float32(0.7), rtol=1e-6)


def test_restore_input_true_leaves_x_as_it_was():
    run = replay_original_test(restore_input=True)
    assert run.x_after.tobytes() == run.x_before.tobytes()


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_restore_input_false_leaves_every_element_moved_by_eps(eps):
    run = replay_original_test(restore_input=False, eps=eps)
    moved = run.x_before.astype(np.float64) - run.x_after.astype(np.float64)
    # Each element is left at x - eps as stored in float32 (a few float32 spacings off at most).
    np.testing.assert_allclose(moved, eps, rtol=0.02)


@pytest.mark.parametrize(
    "switches, dtype",
    [({}, "float32"), ({"dtype": "float16"}, "float16"), ({"dtype": "float64", "rng": "global"}, "float64"),
     ({"dtype": np.float16}, "float16"), ({"dtype": np.dtype("float64"), "rng": "global"}, "float64")],
)
def test_dtype_switch_changes_the_dtype_in_the_message(switches, dtype):
    run = replay_original_test(**switches)
    assert run.x_before.dtype == np.dtype(dtype)
    assert run.result.dtype == dtype
    assert run.message.splitlines()[0].startswith(f"Gradient check failed for {dtype}: ")


def test_float64_passes_at_the_original_step():
    # In float64, x +- 1e-5 are stored almost exactly, so dividing by 2*eps is harmless.
    result = run_original_test(dtype="float64")
    assert result.passed and result.dtype == "float64"


@pytest.mark.parametrize("eps", [1e-4, 3e-4, 1e-3])
def test_eps_switch_sets_the_nominal_step(eps):
    result = replay_original_test(eps=eps, divide_by="nominal").result
    np.testing.assert_array_equal(result.step, 2 * eps)
    assert result.divide_by == "nominal"


def test_eps_switch_changes_the_realised_step_too():
    small = replay_original_test(eps=1e-5, divide_by="realised").result
    large = replay_original_test(eps=1e-3, divide_by="realised").result
    assert large.step[0] == pytest.approx(2e-3, rel=1e-3)
    assert small.step[0] == pytest.approx(2.0027e-5, rel=1e-4)


def test_switches_are_recorded_with_the_originals_filled_in():
    run = replay_original_test(rng="global")
    assert run.switches["rng"] == "global"
    assert run.switches["divide_by"] == "nominal"
    assert run.switches["seed"] == 42
    assert run.switches["eps"] == 1e-5


# --- bad switches ------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [run_original_test, replay_original_test])
def test_unknown_switch_is_refused_naming_it_and_the_accepted_ones(call):
    with pytest.raises(TypeError, match=r"'colour'.*divide_by.*restore_input"):
        call(colour="red")


@pytest.mark.parametrize(
    "name, value, accepted",
    [
        ("divide_by", "exact", r"'nominal', 'realised'"),
        ("rng", "numpy", r"'reseed', 'global'"),
        ("forward", "deterministic", r"'stochastic', 'fixed_mask'"),
        ("backward_mask", "late", r"'captured', 'rebound'"),
        ("restore_input", "yes", r"False, True"),
        ("dtype", "int32", r"float16, float32, float64"),
        ("dtype", "bfloat16", r"float16, float32, float64"),
        # None is no dtype: numpy reads it as float64, which is not the original float32.
        ("dtype", None, r"float16, float32, float64"),
    ],
)
def test_bad_switch_value_is_refused_naming_it_and_the_accepted_values(name, value, accepted):
    with pytest.raises(ValueError, match=rf"^{name}\b.*{accepted}"):
        run_original_test(**{name: value})


@pytest.mark.parametrize(
    "name, value, error, accepted",
    [
        ("eps", 0.0, ValueError, r"> 0"),
        ("eps", -1e-5, ValueError, r"> 0"),
        ("eps", math.nan, ValueError, r"> 0"),
        ("seed", -1, ValueError, r"integer"),
        ("seed", 4.2, TypeError, r"integer"),
        ("seed", True, TypeError, r"integer"),
        ("p", 1.0, ValueError, r"\[0, 1\)"),
        ("p", math.nan, ValueError, r"\[0, 1\)"),
        ("rtol", -1e-3, ValueError, r">= 0"),
        ("atol", math.nan, ValueError, r">= 0"),
        ("values", [], ValueError, r"non-empty"),
        ("values", [1.0, math.inf], ValueError, r"finite"),
    ],
)
def test_bad_numeric_switch_is_refused_naming_it(name, value, error, accepted):
    with pytest.raises(error, match=rf"^{name}\b.*{accepted}"):
        run_original_test(**{name: value})


def test_values_the_dtype_cannot_hold_are_refused():
    with pytest.raises(ValueError, match=r"values must be finite in float16 \(\|v\| <= 65504\)"):
        replay_original_test(values=(1e6,), dtype="float16")


# --- ground truth measured in Mojo 0.25.7 (docs/history.md) -------------------------------------

MOJO_SEED_42 = [0.5245871017917538, 0.26330554078427826, 0.19628582558072902, 0.5123181086967281,
                0.2571016294158307, 0.8154876268180378, 0.4520286423175604, 0.24740811984064287,
                0.3233238206407622, 0.8073739757380473, 0.8444539193172561, 0.07833277848255102]


def test_mojo_stream_after_seed_42_is_bit_for_bit_the_measured_one():
    assert mojo_random_float64(42, 12).tolist() == MOJO_SEED_42


def test_mojo_stream_of_an_unseeded_process_and_of_seed_7():
    assert mojo_random_float64(None, 3).tolist() == [0.13153778773876065, 0.4586501320232198, 0.21895918621247895]
    assert mojo_random_float64(7, 1).tolist() == [0.9207645169652923]


@pytest.mark.parametrize("seed, same_as", [(0, 1), (2**31 - 1, 1), (2**31, 1), (2**32 + 42, 44), (-1, 2**64 - 1)])
def test_mojo_seed_is_reduced_modulo_the_engine_modulus_as_uint64(seed, same_as):
    assert mojo_random_float64(seed, 3).tolist() == mojo_random_float64(same_as, 3).tolist()


def test_mojo_stream_is_the_same_drawn_at_once_or_in_pieces():
    generator = MojoRandom()
    generator.seed(5)
    pieces = np.concatenate([generator.random_float64(k) for k in (1, 4095, 4097, 3)])
    assert np.array_equal(pieces, mojo_random_float64(5, 8196))
    assert np.all((pieces >= 0) & (pieces < 1))


def test_the_original_test_is_the_measured_mojo_run():
    run = replay_original_test()
    assert run.test_mask.tolist() == [1, 0, 0, 1, 0]
    # the quotient 1.4305114746093748 stored in float32, as the original's gradient tensor held it
    assert run.result.numerical.tolist() == [float(np.float32(1.4305114746093748)), 0, 0,
                                             float(np.float32(1.4305114746093748)), 0]
    assert run.result.failing_indices.tolist() == [0, 3]
    assert run.x_after.astype(np.float64).tolist() == [-0.5000100135803223, -9.999999747378752e-06,
                                                       0.19999000430107117, 0.49998998641967773, 0.9999899864196777]
    assert run.message.splitlines()[0] == "Gradient check failed for float32: gradient mismatch at index 0"
    assert run.result.pass_rule == "numerical"


def test_the_dropout2d_test_input_and_mask_are_mojos():
    x = dropout2d_values("float32").ravel().astype(np.float64)
    assert (x[24], x[28], x[31]) == (1.600000023841858, 2.0, 2.299999952316284)
    run = replay_original_test(test="dropout2d")
    assert run.test_mask.shape == (1, 2, 4, 4) and np.all(run.test_mask == 1)
    assert run.result.first_failing_index == 0


def test_the_minimal_patch_is_not_the_whole_fix():
    # dividing by the realised step passes the dropout test, but not its dropout2d sibling
    assert replay_original_test(divide_by="realised").passed
    patched = replay_original_test(test="dropout2d", divide_by="realised")
    assert patched.result.failing_indices.tolist() == [24, 28]
    assert not replay_original_test(divide_by="realised", p=0.1).passed


@pytest.mark.parametrize("test, nominal_worst, realised_worst",
                         [("dropout", 0.0035, 0.0013), ("dropout2d", 0.0108, 0.0052)])
def test_the_complete_fix_passes_both_tests_with_the_measured_margins(test, nominal_worst, realised_worst):
    nominal = replay_original_test(test=test, checker="fixed", divide_by="nominal")
    realised = replay_original_test(test=test, checker="fixed", divide_by="realised")
    assert nominal.passed and realised.passed
    assert nominal.result.max_error_ratio <= nominal_worst and realised.result.max_error_ratio <= realised_worst
    assert realised.x_after.tobytes() == realised.x_before.tobytes()


def test_dropout2d_values_must_fill_its_shape():
    with pytest.raises(ValueError, match="32 elements"):
        replay_original_test(test="dropout2d", values=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"test must be one of .*dropout2d.*got 'conv'"):
        replay_original_test(test="conv")
    with pytest.raises(ValueError, match=r"checker must be one of .*fixed"):
        replay_original_test(checker="new")


@pytest.mark.parametrize("divide_by", ["nominal", "realised"])
def test_private_copies_give_the_leaking_checkers_numbers_bit_for_bit(divide_by):
    run = replay_original_test(divide_by=divide_by)  # restore_input=False: x leaks
    scale = np.float32(1.0 / 0.7)
    x = np.array(run.x_before)
    result = original_check_gradient(lambda z: z * run.test_mask * scale, lambda g, z: np.zeros_like(z), x,
                                     np.ones(5, dtype=np.float32), divide_by=divide_by, restore_input=True)
    assert np.array_equal(result.numerical, run.result.numerical)
    assert np.array_equal(result.step, run.result.step)
    assert np.array_equal(x, run.x_before)


def test_a_step_float16_cannot_store_is_nan_when_realised_and_zero_when_nominal():
    def check(divide_by):
        return original_check_gradient(lambda z: 2 * z, lambda g, z: g, np.array([-0.5], dtype=np.float16),
                                       np.ones(1, dtype=np.float16), divide_by=divide_by, restore_input=True)

    realised, nominal = check("realised"), check("nominal")
    assert realised.step[0] == 0 and np.isnan(realised.numerical[0])
    assert nominal.numerical[0] == 0.0


def test_the_public_fix_passes_by_its_looser_tolerances_not_its_fixed_mask():
    # The public fix changed two things at once: a fixed mask in the test's forward, and rtol=2e-3, atol=1e-5.
    loose = {"rtol": 2e-3, "atol": 1e-5}
    original = replay_original_test().result
    fixed_mask = replay_original_test(forward="fixed_mask").result
    assert not fixed_mask.passed
    np.testing.assert_array_equal(fixed_mask.numerical, original.numerical)
    assert replay_original_test(**loose).passed
    assert replay_original_test(forward="fixed_mask", **loose).passed
    # In float16 the step eps rounds away entirely: the realised divisor cannot rescue that.
    assert not replay_original_test(dtype="float16", divide_by="realised").passed


# --- the original library's dropout from call to call (original_dropout) ------------------------

X32 = np.array(ORIGINAL_VALUES, dtype=np.float32)


def dropout_calls(seed, n, *, reseed=True, seed_once=None, p=0.3):
    """The masks of n consecutive original_dropout calls in one fresh process."""
    state = MojoRandom()
    if seed_once is not None:
        state.seed(seed_once)
    return [original_dropout(X32, p, seed, state, reseed)[1] for _ in range(n)]


def test_original_dropout_with_a_positive_seed_repeats_the_seeded_mask():
    expected = (mojo_random_float64(42, 5).astype(np.float32) > np.float32(0.3)).astype(np.float32)
    assert expected.tolist() == [1, 0, 0, 1, 0]
    masks = dropout_calls(42, 13)
    assert all(m.dtype == np.float32 and m.tolist() == expected.tolist() for m in masks)


def test_original_dropout_seeded_once_continues_the_stream():
    stream = mojo_random_float64(42, 15).reshape(3, 5).astype(np.float32) > np.float32(0.3)
    np.testing.assert_array_equal(dropout_calls(42, 3, reseed=False, seed_once=42), stream)


def test_original_dropout_seed_zero_draws_on_unlike_lib_dropout():
    assert distinct(dropout_calls(0, 30)) > 1
    assert distinct(dropout_calls(42, 30, reseed=False, seed_once=42)) > 1
    assert distinct([dropout(X32, 0.3, seed=0)[1] for _ in range(10)]) == 1  # an ordinary seed in lib


def test_original_dropout_with_p_zero_keeps_everything():
    for reseed in (True, False):
        assert all(np.all(m == 1) for m in dropout_calls(0, 5, reseed=reseed, p=0.0))


def test_check_gradient_passes_a_reseeding_forward_and_fails_one_that_draws_on():
    x = X32.astype(np.float64)
    test_mask = dropout_calls(42, 1)[0]

    def backward(g, _):
        return g * test_mask / 0.7

    for seed, passes in ((42, True), (0, False)):
        state, masks = MojoRandom(), []

        def forward(z, seed=seed, state=state, masks=masks):
            out, mask = original_dropout(z, 0.3, seed, state)
            masks.append(mask)
            return out

        forward(x)  # the test's own call
        result = check_gradient(forward, backward, x, np.ones(5), raise_on_failure=False)
        assert result.passed == passes
        assert result.forward_calls == len(masks) - 1
        assert (distinct(masks) == 1) == passes


def test_the_leak_moves_the_callers_x_but_not_the_numbers_of_the_original_test():
    leaked = replay_original_test(restore_input=False)
    restored = replay_original_test(restore_input=True)
    assert np.array_equal(leaked.result.numerical, restored.result.numerical)
    # every element is left at x - eps as the checker wrote it: in float64, rounded to float32
    written = (leaked.x_before.astype(np.float64) - 1e-5).astype(np.float32)
    assert np.array_equal(leaked.x_after, written)
    assert np.array_equal(restored.x_after, restored.x_before)


# --- the fixed checker's noise term and halving steps (docs/checking_at_kinks.md) ---------------


def _fixed(forward, backward, values, dtype=np.float32):
    x = np.array(values, dtype=dtype)
    return fixed_check_gradient(forward, backward, x, np.ones_like(x))


def _relu(z):
    return np.maximum(z, z.dtype.type(0))


def test_the_fixed_checker_calls_forward_for_y0_only_when_an_element_reaches_the_halving_steps():
    passing = _fixed(lambda z: 3 * z, lambda g, z: 3 * g, [0.5, -1.0])
    assert passing.passed and passing.forward_calls == 4 and passing.halvings.tolist() == [0, 0]
    kinked = _fixed(_relu, lambda g, z: g * (z > 0), [1e-4, 0.5])
    assert kinked.passed and kinked.halvings.tolist() == [7, 0]
    assert kinked.forward_calls == 4 + 1 + 3 * 7  # y0, then both points and y0's repeat per halving


def test_a_forward_that_does_not_repeat_itself_rarely_passes_at_smaller_steps(monkeypatch):
    # relu of x with a fresh dropout mask per call (p = 0.1, the backward scaled for the mean):
    # element 0 sits on the kink's side at 1e-4 and reaches the halving steps, where the masks
    # often agree by chance. y0's repeat at every step catches most of it.
    def passes(trials=400):
        rng = np.random.default_rng(3)

        def stochastic(z):
            return (_relu(z) * (rng.random(z.shape) > 0.1) / 0.9).astype(z.dtype)

        return sum(_fixed(stochastic, lambda g, z: g * (z > 0) / 0.9, [1e-4, 0.5, 0.25]).passed
                   for _ in range(trials))

    with_repeats = passes()
    monkeypatch.setattr("lib.replica.kinks.repeats", lambda again, first: True)
    assert with_repeats <= 0.03 * 400 < 0.25 * 400 <= passes()


def test_a_jump_in_the_second_derivative_converges_at_the_first_halving():
    def smooth_l1(z):  # beta = 1, measured at |d| = beta
        d = np.abs(z)
        return np.where(d < 1, 0.5 * z * z, d - z.dtype.type(0.5)).astype(z.dtype)

    result = _fixed(smooth_l1, lambda g, z: g * np.clip(z, -1, 1), [1.0])
    assert abs(1 - result.numerical[0]) < 1e-3 and result.passed  # 1 - h/4 at k = 1
    assert result.halvings.tolist() == [1] and not result.subgradient[0]


def test_a_backward_wrong_everywhere_fails_at_the_first_settled_step():
    result = _fixed(lambda z: z * z, lambda g, z: 3 * g * z, [0.75], dtype=np.float64)
    assert not result.passed and result.halvings.tolist() == [1] and not result.subgradient[0]
    assert result.numerical[0] == pytest.approx(1.5, rel=1e-9)


def test_a_kink_at_the_point_passes_a_value_between_the_one_sided_slopes_and_fails_another():
    for analytical, passes in ((0.0, True), (0.25, True), (1.0, True), (2.0, False)):
        result = _fixed(_relu, lambda g, z, a=analytical: np.full_like(z, a), [0.0])
        assert result.subgradient[0] and result.halvings[0] == 2 and result.passed == passes
        assert (result.slope_minus[0], result.slope_plus[0]) == (0.0, 1.0)
        assert result.first_failing_index == (None if passes else 0)


def test_a_non_finite_analytical_value_fails_without_the_halving_steps():
    result = _fixed(lambda z: 2 * z, lambda g, z: np.full_like(z, np.nan), [0.5])
    assert not result.passed and result.forward_calls == 2 and result.halvings.tolist() == [0]
