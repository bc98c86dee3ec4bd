"""check_gradient: the dense checker, every element differenced (2N forward calls)."""

from __future__ import annotations

import numpy as np

from lib import _checks
from lib.gradcheck.differences import _central_differences, _validated_inputs
from lib.gradcheck.result import GradCheckResult, GradientCheckError, build_result


def check_gradient(forward, backward, x, grad_output, *, rtol=1e-3, atol=1e-6, eps=None,
                   raise_on_failure=True, mode="dense", probes=2) -> GradCheckResult:
    """Check backward against central differences of forward.

    mode="dense" (default) differences every element: 2N forward calls, and
    on failure the message ends with lib.diagnose's findings. mode="fast"
    checks `probes` random projections in 2*probes forward calls and, on
    failure, localises the failing elements by group testing (see
    lib.fastcheck.check_gradient_fast, which returns a FastCheckResult).

    Args:
        forward: forward(x) -> y, any output shape; must be deterministic.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x: floating array (float16/32/64), never modified.
        grad_output: array of y's shape; the loss is sum(y * grad_output).
        rtol, atol: an element passes when |a - n| <= atol + rtol * max(|a|, |n|).
        eps: half-step; None picks a dtype-aware relative step.
        raise_on_failure: raise GradientCheckError (with `.result`) on failure.
        mode: "dense" or "fast".
        probes: random projections in fast mode (ignored in dense mode).

    Returns:
        GradCheckResult with per-element analytical, numerical, tolerance, step.
    """
    _checks.choice(mode, "mode", ("dense", "fast"))
    _checks.callable_arg(backward, "backward")
    raise_on_failure = _checks.boolean(raise_on_failure, "raise_on_failure")
    probes = _checks.positive_int(probes, "probes")
    if mode == "fast":
        from lib.fastcheck import check_gradient_fast  # lib.fastcheck imports this module

        return check_gradient_fast(forward, backward, x, grad_output, probes=probes, rtol=rtol, atol=atol,
                                   eps=eps, raise_on_failure=raise_on_failure)
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    if eps is not None:
        _checks.positive_step(eps)
    x, work, out_shape, grad64 = _validated_inputs(forward, x, grad_output)

    analytical = np.asarray(backward(np.asarray(grad_output).copy(), work))
    if analytical.shape != x.shape:
        raise ValueError(f"backward must return an array of x's shape {x.shape}; got {analytical.shape}")
    numerical, step, calls = _central_differences(forward, x, work, out_shape, grad64, eps)
    mutated = not np.array_equal(work, x, equal_nan=True)

    result = build_result(analytical, numerical, step, dtype=x.dtype, rtol=rtol, atol=atol,
                          forward_calls=calls + 1, input_mutated=mutated)
    if not result.passed and raise_on_failure:
        message = result.report()
        try:
            # Imported here: lib.diagnose imports this module. diagnose never calls
            # check_gradient, and inside a running diagnosis failure_lines returns
            # nothing, so this cannot recurse.
            from lib.diagnose import failure_lines

            lines = failure_lines(forward, backward, x, grad_output, rtol=rtol, atol=atol, eps=eps)
        except Exception as error:  # a broken diagnosis must not hide the failure it explains
            lines = [f"Diagnosis unavailable ({type(error).__name__}: {error})"]
        raise GradientCheckError(result, "\n".join([message, *lines]))
    return result
