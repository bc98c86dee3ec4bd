"""Investigation workbook for a failing dropout gradient check.

The library, in layers (each imports only those above it):
    lib.dropout    dropout / dropout2d, forward and backward
    lib.gradcheck  check_gradient (dense or fast mode), numerical_gradient, GradCheckResult
    lib.diagnose   diagnose: why a check failed
    lib.replica    run_original_test: the original failing test, switch by switch
    lib.catalogue  ordinary layers, correct and broken, to measure a checker and a diagnosis against
    lib.workbook   the notebooks' tooling: runner, command line, reports, plots, tables
"""

import sys

try:
    import numpy  # noqa: F401  (the one package every module needs)
except ModuleNotFoundError as missing:
    _message = (f"{missing.name} is not installed for {sys.executable}; "
                "run `pip install -r requirements.txt` in the repository first")
    if sys.argv[:1] == ["-m"]:  # `python -m lib ...`: a command line deserves one line, not a traceback
        sys.exit(f"error: {_message}")
    raise ModuleNotFoundError(_message, name=missing.name) from None

from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.gradcheck import (
    GradCheckResult,
    GradientCheckError,
    check_gradient,
    numerical_gradient,
)
from lib.gradcheck.fast import FastCheckResult, check_gradient_fast
from lib.replica import replay_original_test, run_original_test

__all__ = [
    "FastCheckResult",
    "GradCheckResult",
    "GradientCheckError",
    "check_gradient",
    "check_gradient_fast",
    "dropout",
    "dropout2d",
    "dropout2d_backward",
    "dropout_backward",
    "numerical_gradient",
    "replay_original_test",
    "run_original_test",
]
