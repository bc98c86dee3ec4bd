"""A replica of the original library's failing tests, in numpy, bit for bit with Mojo 0.25.7.

    rng       Mojo's process-wide generator (`mojo_random_float64`, `MojoRandom`)
    layers    the original dropout and dropout2d, with Mojo's comparisons and rounding
    checkers  the failure-era checker and the complete fix, loop for loop as the Mojo twin's
    kinks     the complete fix's noise term and its re-measurement at halving steps
    run       the two tests with a switch for every suspected cause (`run_original_test`)
"""

from lib.replica.checkers import FixedCheckResult, dtype_aware_step, fixed_check_gradient, original_check_gradient
from lib.replica.layers import keep_mask, original_dropout, original_dropout2d, original_dropout_backward
from lib.replica.rng import MojoRandom, mojo_random_float64
from lib.replica.run import (
    CHECKERS,
    DROPOUT2D_SHAPE,
    ORIGINAL,
    ORIGINAL_DROPOUT2D,
    ORIGINAL_VALUES,
    REPORTED,
    SWITCHES,
    TESTS,
    GlobalRNG,
    ReplicaRun,
    dropout2d_values,
    matches_reported,
    original_message,
    originals,
    replay_original_test,
    run_original_test,
    test_values,
)

__all__ = [
    "CHECKERS", "DROPOUT2D_SHAPE", "ORIGINAL", "ORIGINAL_DROPOUT2D", "ORIGINAL_VALUES", "REPORTED", "SWITCHES",
    "TESTS", "FixedCheckResult", "GlobalRNG", "MojoRandom", "ReplicaRun", "dropout2d_values", "dtype_aware_step",
    "fixed_check_gradient", "keep_mask", "matches_reported", "mojo_random_float64", "original_check_gradient",
    "original_dropout", "original_dropout2d", "original_dropout_backward", "original_message", "originals",
    "replay_original_test", "run_original_test", "test_values",
]
