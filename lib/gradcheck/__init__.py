"""A careful finite-difference gradient checker.

The checker compares an analytical gradient (your `backward`) with a numerical
one: the central-difference slope of the scalar loss

    L(x) = sum(forward(x) * grad_output)

whose gradient is exactly the vector-Jacobian product `backward` must return.

Four choices make it trustworthy in float32, where fixed-step checkers fail:

1. The step is relative and dtype-aware: h_i = cbrt(machine eps) * max(1, |x_i|),
   which balances truncation error (~h^2) against rounding error (~eps/h).
2. It divides by the *realised* step, x_i+ - x_i- as actually stored in x's
   dtype (exact in float64), not the nominal 2h. In float32, x = -0.5 and
   h = 1e-5 store values 2.0027e-5 apart: dividing by 2e-5 is 0.14 % off,
   which alone fails an rtol=1e-3 check.
3. It subtracts the two outputs element by element (in float64) before
   reducing with grad_output, so the sum never adds large equal terms whose
   difference it then needs.
4. An element that fails is measured again before it is blamed: its pass band
   widens by what the arithmetic can explain, the rounding of the outputs it
   moved and, if that is not enough, the difference from a float64 evaluation
   at the same points (`arithmetic`); if it still fails, at halving steps
   h0 / 2^k, for a kink inside the default step (relu at 1e-4 in float32):
   it passes only when the slopes converge to the analytical value or the
   point sits on a kink and the analytical value lies between the one-sided
   slopes, a subgradient (`kinks`, docs/checking_at_kinks.md). Where the
   rounding bound stops the steps undecided, they are taken again in float64
   if forward computes in float64; forward must give the same outputs at x
   on every call, or nothing passes at a smaller step.

And it looks where a plain check cannot: the same output differences are
contracted with random upstream gradients (a backward that ignores or squares
grad_output fails even when grad_output is all ones), and a forward or
backward that writes into x or grad_output fails the check.

The modules: `steps` (where to evaluate), `differences` (the one central-difference
loop) over `sweep` (its forward calls, gathered in blocks, optionally batched) and
`returns` (what forward and backward may return), `arithmetic` (the noise term),
`kinks` (the smaller steps), `jacobian` (the notebooks' numerical Jacobian and
relative error),
`result` (GradCheckResult and its report),
`dense` (the dense mode, every element differenced) and `check` (check_gradient:
checks its arguments and picks a mode). Fast mode is `fast` (check_gradient_fast,
the entry point) over `projection` (the random sign probes and their tolerance),
`prober` (their forward calls), `localise` (group testing for failing elements),
`fast_result` (FastCheckResult and its report), `reprobe` (the probes measured
again without elements that passed only at a smaller step) and `blockwise` (cache-sized
passes over large arrays). The caller's `x` is never touched: the checker
perturbs a private copy and restores each element in a `finally` block.
"""

from lib.gradcheck.check import check_gradient
from lib.gradcheck.differences import _call_forward, _validated_inputs, numerical_gradient
from lib.gradcheck.jacobian import numerical_jacobian, relative_error
from lib.gradcheck.result import (
    MAX_REPORTED_ELEMENTS,
    PASS_RULES,
    GradCheckResult,
    GradientCheckError,
    build_result,
    diagnosis_hint,
    format_element_table,
    tolerance_for,
    tolerance_line,
)
from lib.gradcheck.steps import _realised_points, default_step

__all__ = [
    "MAX_REPORTED_ELEMENTS", "PASS_RULES", "GradCheckResult", "GradientCheckError", "_call_forward",
    "_realised_points", "_validated_inputs", "build_result", "check_gradient", "default_step",
    "diagnosis_hint", "format_element_table", "numerical_gradient", "numerical_jacobian",
    "relative_error", "tolerance_for", "tolerance_line",
]
