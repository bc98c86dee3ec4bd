"""lib.scaling: counted forward calls, the hand-made probe, planted faults and the sensitivity limit."""

from __future__ import annotations

import math
import sys

import matplotlib

matplotlib.use("Agg")  # tests only draw into figures that are never shown

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.dropout import dropout
from lib.gradcheck import check_gradient
from lib.gradcheck.fast import check_gradient_fast, hoeffding_multiplier
from lib.replica import test_values
from lib.scaling import (
    CallCounter,
    detection_threshold,
    dropout_problem,
    hand_probe,
    hoeffding_sums,
    localise_planted,
    log_slope,
    original_problem,
    planted,
    plot_forward_calls,
    plot_hoeffding,
    plot_localisation,
    plot_sensitivity,
    plot_times,
    run_check,
    run_or_refusal,
    sensitivity,
    size_grid,
    sweep,
    tail_fraction,
    torch_available,
    torch_status,
    torch_sweep,
)

# --- counting ------------------------------------------------------------------------------------------


def test_call_counter_counts_calls_and_elements_and_resets():
    counter = CallCounter(lambda x: x * 2)
    out = counter(np.arange(3.0))
    counter(np.arange(4.0))
    assert out.tolist() == [0.0, 2.0, 4.0]
    assert (counter.calls, counter.elements) == (2, 7)
    counter.reset()
    assert (counter.calls, counter.elements) == (0, 0)
    with pytest.raises(TypeError, match="callable"):
        CallCounter(3)


@pytest.mark.parametrize("n", [1, 5, 37])
def test_dense_mode_makes_two_calls_per_element_and_one_at_x(n):
    run = run_check(dropout_problem(n), "dense")
    assert run.passed
    assert run.calls == 2 * n + 1 == run.result.forward_calls
    assert run.elements == run.calls * n


@pytest.mark.parametrize("n", [5, 1000, 50_000])
def test_fast_mode_makes_two_calls_per_probe_whatever_n(n):
    assert run_check(dropout_problem(n), "fast").calls == 4
    assert run_check(dropout_problem(n), "fast", probes=3).calls == 6


def test_sweep_returns_one_run_per_size_with_the_best_time():
    runs = sweep([4, 8], "dense", repeats=2)
    assert [r.n for r in runs] == [4, 8]
    assert [r.calls for r in runs] == [9, 17]
    assert all(r.seconds > 0 and r.passed for r in runs)
    with pytest.raises(ValueError, match="mode"):
        run_check(dropout_problem(4), "sparse")


def test_size_grid():
    assert size_grid(16, 1024) == [16, 64, 256, 1024]
    assert size_grid(16, 1000) == [16, 64, 256, 1000]
    assert size_grid(10, 100000, 10) == [10, 100, 1000, 10000, 100000]
    assert size_grid(7, 7) == [7]
    with pytest.raises(ValueError):
        size_grid(100, 10)


# --- the function pairs --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dropout_problem_is_seeded_dropout_of_the_test_values(dtype):
    problem = dropout_problem(12, dtype, p=0.4, seed=3)
    assert problem.x.dtype == np.dtype(dtype)
    assert problem.x.tolist() == np.array(test_values(12), dtype=dtype).tolist()
    assert np.array_equal(problem.forward(problem.x), problem.forward(problem.x))
    assert np.array_equal(problem.mask, dropout(problem.x, 0.4, seed=3)[1])
    # backward is J^T g for the explicit Jacobian
    g = np.arange(12.0).astype(dtype)
    expected = problem.jacobian.T @ g.astype(np.float64)
    assert np.allclose(problem.backward(g, problem.x), expected, rtol=1e-3)


def test_original_problem_with_seed_zero_redraws_the_mask_and_fails_both_modes():
    assert run_check(original_problem(5, seed=42), "dense").passed
    unseeded = original_problem(5, seed=0)
    first, second = unseeded.forward(unseeded.x), unseeded.forward(unseeded.x)
    assert not np.array_equal(first, second)
    assert not run_check(original_problem(5, seed=0), "dense").passed
    assert not run_check(original_problem(5, seed=0), "fast").passed


def test_planted_changes_one_element_and_leaves_the_original_backward_alone():
    problem = dropout_problem(6)
    right = problem.backward(problem.grad_output, problem.x)
    wrong = planted(problem.backward, 4, 2.5)(problem.grad_output, problem.x)
    assert np.flatnonzero(wrong != right).tolist() == [4]
    assert float(wrong[4] - right[4]) == pytest.approx(2.5)
    assert np.array_equal(problem.backward(problem.grad_output, problem.x), right)


def test_run_or_refusal_reports_a_step_too_small_for_the_dtype():
    run, message = run_or_refusal(original_problem(5, "float16"), "dense", eps=1e-5)
    assert run is None and "too small" in message
    run, message = run_or_refusal(original_problem(5, "float32"), "fast", eps=1e-5)
    assert run.passed and message == ""


# --- the probe by hand ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("eps", [None, 1e-5])
def test_hand_probe_sides_agree_and_match_the_explicit_vjp(dtype, eps):
    problem = dropout_problem(40, dtype)
    probe = hand_probe(problem, seed=1, eps=eps)
    assert probe.analytical == pytest.approx(probe.vjp, rel=1e-12, abs=1e-18)
    assert probe.passed
    assert set(np.abs(probe.signs).tolist()) == {1.0}
    assert np.all(np.sign(probe.d) == probe.signs)


def test_hand_probe_tolerance_is_lib_s_up_to_the_rounding_part():
    problem = dropout_problem(200)
    probe = hand_probe(problem, seed=3)
    a = problem.backward(problem.grad_output, problem.x).astype(np.float64)
    t = (1e-6 + 1e-3 * np.abs(a)) / (1 - 1e-3)
    assert probe.errors_part == pytest.approx(hoeffding_multiplier(2) * np.linalg.norm(t * probe.d), rel=1e-12)
    lib = check_gradient_fast(problem.forward, problem.backward, problem.x, problem.grad_output)
    assert probe.tolerance == pytest.approx(float(lib.probe_tolerance[0] * lib.probe_step[0]), rel=1e-2)


def test_hand_probe_sees_the_nominal_step_error_in_float32_at_the_original_step():
    probe = hand_probe(dropout_problem(5, "float32"), seed=42, eps=1e-5)
    # The realised step differs from 2h, so the nominal comparison is off, but far less than T.
    assert probe.nominal_analytical != probe.analytical
    nominal = abs(probe.nominal_analytical - probe.numerical)
    assert abs(probe.residual) < nominal < probe.tolerance


def test_hand_probe_fails_a_wrong_backward():
    problem = dropout_problem(50)
    wrong = planted(problem.backward, 7, 100.0)
    probe = hand_probe(type(problem)(problem.forward, wrong, problem.x, problem.grad_output, problem.mask,
                                     problem.p), seed=0)
    assert not probe.passed


# --- Hoeffding -----------------------------------------------------------------------------------------


def test_hoeffding_sums_are_unit_variance_and_stay_under_the_bound():
    rng = np.random.default_rng(0)
    t, w = rng.uniform(0, 2, 300), rng.uniform(0.5, 1, 300)
    z = hoeffding_sums(t, w, draws=4000, seed=1)
    assert z.shape == (4000,)
    assert abs(float(np.mean(z))) < 0.1
    assert float(np.std(z)) == pytest.approx(1.0, abs=0.05)
    levels = [1.0, 2.0, 3.0]
    assert np.all(tail_fraction(z, levels) <= 2 * np.exp(-np.square(levels) / 2))
    assert np.array_equal(z, hoeffding_sums(t, w, draws=4000, seed=1))


def test_tail_fraction():
    assert tail_fraction(np.array([-3.0, 0.5, 2.0, 1.0]), [0.0, 1.0, 2.5]).tolist() == [1.0, 0.75, 0.25]


# --- localisation and sensitivity ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 1000, 20000])
def test_localise_planted_finds_the_fault_within_the_search_budget(n):
    rows = localise_planted(n, error=50.0, trials=4, seed=5)
    assert len(rows) == 4
    for row in rows:
        assert row.found_exactly and not row.passed and row.visible
        assert row.search_calls <= 2 * (math.ceil(math.log2(n)) - 1) <= row.budget
        assert row.detail_calls in (2, 4)  # the element alone as the dense mode measures it, then in float64
        assert row.extra_calls <= 2 * math.ceil(math.log2(n)) + 4  # the search, then the element twice
        assert row.probe_calls == 4


def test_positions_depend_only_on_seed_and_n():
    first = [r.index for r in localise_planted(1000, trials=3, seed=9)]
    again = [r.index for r in localise_planted(1000, trials=3, seed=9, dtype="float64")]
    other = [r.index for r in localise_planted(1000, trials=3, seed=10)]
    assert first == again != other


@settings(max_examples=15, deadline=None)
@given(index=st.integers(0, 1999), factor=st.floats(2.05, 20.0), sign=st.sampled_from([-1.0, 1.0]))
def test_a_fault_above_the_threshold_is_always_seen(index, factor, sign):
    problem = dropout_problem(2000)
    clean = check_gradient_fast(problem.forward, problem.backward, problem.x, problem.grad_output)
    error = sign * factor * detection_threshold(clean, index)
    wrong = planted(problem.backward, index, error)
    result = check_gradient_fast(problem.forward, wrong, problem.x, problem.grad_output, raise_on_failure=False)
    assert not result.passed
    assert result.failing_indices.tolist() == [index]


def test_a_fault_well_below_the_guaranteed_threshold_is_found_by_the_rounding_screen():
    problem = dropout_problem(1000)
    clean = check_gradient_fast(problem.forward, problem.backward, problem.x, problem.grad_output)
    wrong = planted(problem.backward, 123, 0.05 * detection_threshold(clean, 123))
    fast = check_gradient_fast(problem.forward, wrong, problem.x, problem.grad_output, raise_on_failure=False)
    dense = check_gradient(problem.forward, wrong, problem.x, problem.grad_output, raise_on_failure=False)
    assert fast.failing_indices.tolist() == dense.failing_indices.tolist() == [123]


def test_threshold_grows_like_sqrt_n_and_with_a_smaller_step():
    sizes = [100, 1000, 10000]
    thresholds = sensitivity(sizes)
    assert 0.4 < log_slope(sizes, thresholds) < 0.6
    # At the original eps=1e-5 rounding dominates T: a projection sees less.
    assert sensitivity([5], eps=1e-5)[0] > 3 * sensitivity([5])[0]


def test_log_slope_recovers_a_power_law():
    n = np.array([10.0, 100.0, 1000.0])
    assert log_slope(n, 3 * n**0.5) == pytest.approx(0.5)
    assert log_slope(n, 2 * n + 0.0) == pytest.approx(1.0)


# --- PyTorch (optional) --------------------------------------------------------------------------------


def test_torch_is_not_timed_in_float16():
    assert torch_status("float16") == "PyTorch not timed in float16"
    assert torch_sweep([8], fast=True, dtype="float16") is None


def test_without_torch_the_sweep_says_so_and_returns_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when it is absent
    assert not torch_available()
    assert torch_status("float32") == "PyTorch is not installed"
    assert torch_sweep([8], fast=False, dtype="float64") is None


@pytest.mark.skipif(not torch_available(), reason="PyTorch is optional")
def test_torch_sweep_times_a_passing_check_on_the_same_loss():
    slow = torch_sweep([8, 16], fast=False, dtype="float64")
    fast = torch_sweep([1000], fast=True, dtype="float32")
    assert [r.n for r in slow] == [8, 16] and all(r.passed for r in slow + fast)
    assert [r.calls >= 2 * r.n for r in slow] == [True, True]
    assert fast[0].calls < 10
    assert torch_status("float64") == ""


# --- plots ---------------------------------------------------------------------------------------------


def test_plots_draw_what_they_are_given():
    dense, fast = sweep([4, 16], "dense"), sweep([4, 16, 64], "fast")
    rows = localise_planted(100, trials=2)
    fig, axes = plt.subplots(5)
    plot_forward_calls(axes[0], dense, fast, up_to=64)
    assert len(axes[0].lines) == 3
    plot_times(axes[1], {"dense": dense, "fast": fast, "torch slow": None}, absent="PyTorch is not installed")
    assert len(axes[1].lines) == 2 and axes[1].get_legend().get_title().get_text() == "PyTorch is not installed"
    plot_localisation(axes[2], rows)
    assert len(axes[2].collections) >= 1
    plot_sensitivity(axes[3], [10, 100], [0.1, 0.3], dense_tolerance=1e-3, fault=5.0)
    assert len(axes[3].lines) == 4
    plot_hoeffding(axes[4], np.array([0.5, -1.0, 2.0]), 5.6, [0.0, 1.0, 2.0])
    assert axes[4].get_yscale() == "log"
    plt.close(fig)
