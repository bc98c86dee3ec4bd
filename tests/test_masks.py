"""Tests of lib.masks: mask collection per seeding mode, agreement, numerical shift, term split."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib import replica
from lib.gradcheck import build_result, check_gradient
from lib.masks import (
    MaskSeries,
    OriginalForward,
    central_difference_terms,
    fixed_mask_forward,
    lib_masks,
    mask_string,
    mask_table,
    numerical_shift,
    original_masks,
    plot_agreement_panels,
    plot_numerical_deviation,
    replica_masks,
    split_forward_masks,
)
from lib.replica import mojo_random_float64, replay_original_test
from lib.workbook.plots import FAIL_COLOR

# Imported through the module: a bare `test_values` name would be collected as a test.
X32 = np.array(replica.test_values(5), dtype=np.float32)


def test_reseeding_with_a_positive_seed_repeats_one_mask():
    series = original_masks(X32, 0.3, 42, 12)
    assert series.masks.shape == (12, 5)
    assert series.call_rate == 1.0
    assert series.matching_calls == 12
    assert series.distinct == 1
    assert series.masks.dtype == np.float32


def test_global_rng_and_seed_zero_draw_fresh_masks():
    for series in (original_masks(X32, 0.3, 42, 30, rng="global"), original_masks(X32, 0.3, 0, 30)):
        assert series.call_rate < 1.0
        assert series.distinct > 1
        assert 0.0 < series.element_rate < 1.0


def test_reseed_reference_is_the_seeded_draw():
    # The reference of the reseeding mode is the mask of Mojo's stream after seed(42).
    expected = (mojo_random_float64(42, 5).astype(np.float32) > np.float32(0.3)).astype(np.float32)
    np.testing.assert_array_equal(expected, [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(original_masks(X32, 0.3, 42, 1).reference, expected)


def test_global_mode_seeded_once_continues_the_stream():
    series = original_masks(X32, 0.3, 42, 2, rng="global")
    stream = mojo_random_float64(42, 15).reshape(3, 5).astype(np.float32) > np.float32(0.3)
    np.testing.assert_array_equal(series.reference, stream[0])
    np.testing.assert_array_equal(series.masks, stream[1:])


def test_lib_seed_zero_is_an_ordinary_seed_unlike_the_original():
    assert lib_masks(X32, 0.3, 10, seed=0).call_rate == 1.0
    assert original_masks(X32, 0.3, 0, 10).call_rate < 1.0


def test_lib_shared_generator_advances():
    series = lib_masks(X32, 0.3, 10, rng_seed=42)
    assert series.call_rate < 1.0
    with pytest.raises(ValueError, match="exactly one"):
        lib_masks(X32, 0.3, 3)
    with pytest.raises(ValueError, match="exactly one"):
        lib_masks(X32, 0.3, 3, seed=1, rng_seed=1)


def test_p_zero_keeps_everything_in_every_mode():
    for rng in ("reseed", "global"):
        series = original_masks(X32, 0.0, 0, 5, rng=rng)
        assert series.call_rate == 1.0
        assert np.all(series.masks == 1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="rng"):
        original_masks(X32, 0.3, 42, 3, rng="fresh")
    with pytest.raises(ValueError, match="p must be"):
        original_masks(X32, 1.0, 42, 3)
    with pytest.raises(ValueError, match="1-D"):
        original_masks(np.zeros((2, 2), np.float32), 0.3, 42, 3)
    with pytest.raises(TypeError):
        original_masks(np.arange(3), 0.3, 42, 3)


def test_series_statistics_on_a_hand_made_example():
    reference = np.array([1.0, 0.0, 1.0])
    masks = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    s = MaskSeries("hand", reference, masks)
    assert s.matching_calls == 2
    assert s.call_rate == 0.5
    assert s.element_rate == pytest.approx(9 / 12)
    assert s.distinct == 3
    table = mask_table([s])
    assert "hand" in table and "2/4" in table and "75.0%" in table


def test_mask_string():
    assert mask_string(np.array([1.0, 1.0, 0.0])) == "110"


def test_replica_masks_follow_the_rng_switch():
    agreeing = replica_masks(replay_original_test())
    assert agreeing.n_calls == 10 and agreeing.call_rate == 1.0
    assert replica_masks(replay_original_test(rng="global")).call_rate < 1.0


def test_numerical_shift_is_zero_for_one_function_and_large_for_changing_masks():
    same = replay_original_test()
    fixed = replay_original_test(forward="fixed_mask")
    shift = numerical_shift(same.result, fixed.result)
    assert shift.max_shift == 0.0
    assert not shift.produces_failure
    trap_run = replay_original_test(seed=0)
    trap = numerical_shift(trap_run.result, replay_original_test(seed=0, forward="fixed_mask").result)
    assert trap.produces_failure
    assert trap.max_shift > 1e3
    assert trap.exceeds[trap.worst_index]


def test_numerical_shift_uses_the_pass_rule():
    def result(numerical):
        n = np.asarray(numerical, dtype=np.float64)
        return build_result(np.ones(2), n, np.full(2, 2e-5), dtype=np.float32, rtol=1e-3, atol=1e-6)

    shift = numerical_shift(result([1.0, 1.0]), result([1.0005, 1.01]))
    np.testing.assert_array_equal(shift.exceeds, [False, True])
    with pytest.raises(ValueError, match="different sizes"):
        numerical_shift(result([1.0, 1.0]), build_result(np.ones(3), np.ones(3), np.ones(3), dtype=np.float32,
                                                         rtol=1e-3, atol=1e-6))


@pytest.mark.parametrize("switches", [{}, {"seed": 0}, {"rng": "global"}, {"dtype": "float64", "seed": 0}])
def test_terms_add_up_to_the_replica_numerical_gradient(switches):
    # the decomposition holds x fixed; the original checker's leak would move it by eps
    run = replay_original_test(restore_input=True, **switches)
    x = run.x_before
    plus, minus = split_forward_masks(run.forward_masks, x.size)
    slope, change = central_difference_terms(x, plus, minus, 0.3, 1e-5)
    # What is left is the rounding of the outputs to x's dtype: tiny next to |x| / eps.
    rest = run.result.numerical - slope - change
    limit = 1e-2 if x.dtype == np.float32 else 1e-6
    assert np.max(np.abs(rest)) < limit
    if switches.get("seed", 42) > 0 and switches.get("rng", "reseed") == "reseed":
        assert np.all(change == 0)


def test_slope_term_shows_the_stored_step():
    # With one mask, the slope term is mask/(1-p) times realised/nominal step: 1.4305115 at x=-0.5.
    mask = np.ones((5, 5))
    slope, change = central_difference_terms(X32, mask, mask, 0.3, 1e-5)
    assert np.all(change == 0)
    assert slope[0] == pytest.approx(1.4305115, abs=5e-8)
    with pytest.raises(ValueError, match="shape"):
        central_difference_terms(X32, np.ones((4, 5)), mask, 0.3, 1e-5)
    with pytest.raises(ValueError, match="forward masks"):
        split_forward_masks(np.ones((9, 5)), 5)


def test_original_forward_with_check_gradient():
    x = X32.astype(np.float64)
    forward = OriginalForward(0.3, 42)
    forward(x)  # the test's own dropout call
    test_mask = forward.masks[0]

    def backward(g, _):
        return g * test_mask / 0.7

    ok = check_gradient(forward, backward, x, np.ones(5), raise_on_failure=False)
    assert ok.passed
    assert len(forward.masks) == 1 + 1 + 2 * 5  # test call, checker's shape probe, 2 per element
    trap = OriginalForward(0.3, 0)
    bad = check_gradient(trap, backward, x, np.ones(5), raise_on_failure=False)
    assert not bad.passed
    assert len({m.tobytes() for m in trap.masks}) > 1


def test_fixed_mask_forward_keeps_dtype_and_mask():
    mask = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    forward = fixed_mask_forward(mask, 0.3)
    out = forward(X32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, X32 * mask / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(forward(X32), out)


def test_plots_draw_and_check_their_arguments():
    series = [original_masks(X32, 0.3, 42, 4), original_masks(X32, 0.3, 0, 4)]
    fig, axes = plt.subplots(1, 2)
    rates = plot_agreement_panels(axes, series)
    assert rates == [1.0, series[1].call_rate]
    assert axes[0].get_legend() is None and axes[1].get_legend() is not None
    with pytest.raises(ValueError, match="one axes per series"):
        plot_agreement_panels(axes, series[:1])
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_numerical_deviation(ax, np.ones(5), {"a": np.ones(5), "b": np.full(5, 1e4)}, rtol=1e-3, atol=1e-6)
    assert ax.get_yscale() == "symlog"
    assert ax.get_legend() is None
    low, high = ax.get_ylim()
    assert high >= 10 * (1e4 - 1) and low <= -10 * (1e4 - 1)  # the farthest marker keeps a decade of room
    ticks = ax.get_yticks()
    assert 0.0 in ticks and np.allclose(ticks, -ticks[::-1])  # symmetric, labelled at zero
    plt.close(fig)
    fig, ax = plt.subplots()  # nothing but zeros and no tolerance: still draws
    plot_numerical_deviation(ax, np.zeros(3), {"a": np.zeros(3)}, rtol=0.0, atol=0.0)
    plt.close(fig)


def test_deviation_markers_follow_the_pass_rule_and_the_legend_is_neutral():
    fig, ax = plt.subplots()
    analytical = np.array([1.0, 1.0, 0.0])
    numerical = np.array([1.0005, 1.01, 0.0])  # passes, fails (|d| > 1e-6 + 1e-3 * 1.01), exact
    plot_numerical_deviation(ax, analytical, {"a": numerical}, rtol=1e-3, atol=1e-6, legend=True)
    edges = ax.collections[-1].get_edgecolors()
    red = np.array(matplotlib.colors.to_rgba(FAIL_COLOR))
    assert [bool(np.allclose(e, red)) for e in edges] == [False, True, False]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "passes: within the tolerance", "a", "red marker: the element fails"]
    assert matplotlib.colors.to_hex(legend.legend_handles[1].get_markeredgecolor()) == "#000000"
    plt.close(fig)
