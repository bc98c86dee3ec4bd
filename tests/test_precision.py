"""lib.precision: stored steps, step anatomy, and error-versus-step sweeps."""

import numpy as np
import pytest

from lib.precision import (
    DTYPES,
    best_step,
    binade,
    central_difference,
    default_steps,
    function_error_vs_step,
    ratio_scan,
    realised_step,
    relative_error,
    replica_error_vs_step,
    step_anatomy,
    step_ratio,
    stored_perturbation,
)
from lib.replica import ORIGINAL_VALUES, replay_original_test


def test_float32_step_at_minus_half_is_the_reported_one():
    x = np.array([-0.5], dtype=np.float32)
    plus, minus = stored_perturbation(x, 1e-5)
    assert plus.dtype == np.float32 and minus.dtype == np.float32
    # 336 spacings of 2^-25 above, 168 spacings of 2^-24 below
    assert float(plus[0]) == -0.5 + 336 * 2.0**-25
    assert float(minus[0]) == -0.5 - 168 * 2.0**-24
    assert realised_step(x, 1e-5)[0] == pytest.approx(2.0027e-5, rel=1e-4)
    assert step_ratio(x, 1e-5)[0] == pytest.approx(1.00136, abs=1e-5)


def test_ratio_times_scale_gives_the_reported_numerical_value():
    scale = float(np.float32(1.0 / 0.7))
    ratio = step_ratio(np.array([-0.5], dtype=np.float32), 1e-5)[0]
    assert f"{scale * ratio:.7f}" == "1.4305115"


def test_float64_step_is_nearly_exact_and_float16_step_can_vanish():
    assert abs(step_ratio(np.array([-0.5]), 1e-5)[0] - 1) < 1e-10
    assert realised_step(np.array([-0.5], dtype=np.float16), 1e-5)[0] == 0.0


def test_stored_perturbation_does_not_modify_x_and_refuses_integers():
    x = np.array([0.2, 0.5], dtype=np.float32)
    before = x.copy()
    stored_perturbation(x, 1e-5)
    assert np.array_equal(x, before)
    with pytest.raises(TypeError):
        stored_perturbation(np.array([1, 2]), 1e-5)
    with pytest.raises(ValueError):
        stored_perturbation(x, 0.0)


def test_binade_bounds():
    low, high = binade([-0.5, 0.49999, 0.2, 1.0, 0.0])
    assert low.tolist() == [0.5, 0.25, 0.125, 1.0, 0.0]
    assert high.tolist() == [1.0, 0.5, 0.25, 2.0, 0.0]


def test_step_anatomy_explains_index_0_2_and_3():
    a = step_anatomy(ORIGINAL_VALUES, 1e-5, "float32")
    assert a["stored_steps_minus"][0] == 168 and a["stored_steps_plus"][0] == 336
    assert a["stored_steps_plus"][2] == 671 and a["stored_steps_minus"][2] == 671
    assert a["grid_steps_minus"][0] == pytest.approx(167.77, abs=0.01)
    assert a["ratio"][0] == a["ratio"][3] == a["ratio"][4]
    assert abs(a["ratio"][0] - 1) > 1e-3 > abs(a["ratio"][2] - 1)
    assert a["spacing_minus"][0] == 2.0**-24 and a["spacing_plus"][0] == 2.0**-25


def test_ratio_scan_error_stays_within_its_envelope():
    xs = np.linspace(-3, 3, 2001)
    for dtype in DTYPES:
        error, envelope = ratio_scan(xs, 1e-3, dtype)
        assert error.shape == envelope.shape == xs.shape
        assert np.all(error <= envelope + 1e-15)  # 1e-15: the float64 division by 2*eps


def test_ratio_scan_is_a_staircase_in_float32():
    error, _ = ratio_scan([0.3, 0.6, 1.2, 3.0, 6.0], 1e-5, "float32")
    assert np.allclose(error, error[0]) and error[0] > 1e-3
    below, _ = ratio_scan([0.13, 0.2, 0.24], 1e-5, "float32")
    assert np.all(below < 1e-3)


def _replica_forward_and_analytical(dtype):
    run = replay_original_test(dtype=dtype)
    mask = run.test_mask
    scale = np.dtype(dtype).type(1.0 / 0.7)
    return (lambda z: z * mask * scale), run


@pytest.mark.parametrize("divide_by", ["nominal", "realised"])
def test_central_difference_matches_the_replica_bit_for_bit(divide_by):
    forward, _ = _replica_forward_and_analytical("float32")
    x = np.array(ORIGINAL_VALUES, dtype=np.float32)
    numerical, width = central_difference(forward, x, np.ones(5), 1e-5, divide_by=divide_by)
    expected = replay_original_test(divide_by=divide_by).result
    assert np.array_equal(numerical, expected.numerical)
    assert np.array_equal(width, expected.step)
    assert np.array_equal(x, np.array(ORIGINAL_VALUES, dtype=np.float32))


def test_central_difference_zero_step_is_nan_when_realised_and_zero_when_nominal():
    x = np.array([-0.5], dtype=np.float16)
    n_real, w_real = central_difference(lambda z: 2 * z, x, np.ones(1), 1e-5, divide_by="realised")
    n_nom, _ = central_difference(lambda z: 2 * z, x, np.ones(1), 1e-5, divide_by="nominal")
    assert w_real[0] == 0 and np.isnan(n_real[0])
    assert n_nom[0] == 0.0
    with pytest.raises(ValueError):
        central_difference(lambda z: z, x, np.ones(1), 1e-5, divide_by="exact")


def test_relative_error():
    err = relative_error([1.0, 0.0, 2.0, 1.0], [1.001, 0.0, 1.0, np.nan])
    assert err[0] == pytest.approx(0.001 / 1.001)
    assert err[1] == 0.0 and err[2] == 0.5 and np.isnan(err[3])


def test_tanh_sweep_has_a_v_with_its_floor_near_the_default_step():
    steps = np.logspace(-10, -0.5, 39)
    for dtype in ("float32", "float64"):
        errors = function_error_vs_step(np.tanh, lambda z: 1 - np.tanh(z) ** 2, ORIGINAL_VALUES, steps, dtype)
        h_best, e_best = best_step(steps, errors)
        assert errors[0] > 100 * e_best and errors[-1] > 100 * e_best  # both arms rise
        assert 0.1 < h_best / default_steps([dtype])[dtype] < 10
    assert default_steps(["float32"])["float32"] == pytest.approx(np.cbrt(np.finfo(np.float32).eps))


def test_replica_sweep_reproduces_the_failure_and_its_fix_at_the_original_step():
    nominal = replica_error_vs_step([1e-5], divide_by="nominal")[0]
    realised = replica_error_vs_step([1e-5], divide_by="realised")[0]
    in_float64 = replica_error_vs_step([1e-5], divide_by="nominal", dtype="float64")[0]
    assert nominal > 1e-3 > realised
    assert in_float64 < 1e-9
