"""Investigation workbook for a failing dropout gradient check.

Public pieces:
    lib.dropout    dropout / dropout2d, forward and backward
    lib.gradcheck  check_gradient, numerical_gradient, GradCheckResult
    lib.replica    run_original_test: the original failing test, switch by switch
"""

from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.gradcheck import (
    GradCheckResult,
    GradientCheckError,
    check_gradient,
    numerical_gradient,
)
from lib.replica import replay_original_test, run_original_test

__all__ = [
    "GradCheckResult",
    "GradientCheckError",
    "check_gradient",
    "dropout",
    "dropout2d",
    "dropout2d_backward",
    "dropout_backward",
    "numerical_gradient",
    "replay_original_test",
    "run_original_test",
]
