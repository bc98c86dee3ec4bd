"""check_gradient: the one entry point, validating its arguments and choosing a mode.

Like numpy's assert_allclose over its comparison engine, this module only
checks what the caller passed and dispatches: `dense` differences every
element, `fast` projects onto random directions. Both report through
`result`, so a failure reads the same whichever mode found it.
"""

from __future__ import annotations

import numpy as np

from lib import _checks
from lib.gradcheck.dense import dense_check
from lib.gradcheck.fast import check_gradient_fast
from lib.gradcheck.result import GradCheckResult, GradientCheckError, diagnosis_hint


def check_gradient(forward, backward, x, grad_output, *, rtol=1e-3, atol=1e-6, eps=None,
                   raise_on_failure=True, mode="dense", probes=None, strict=False, probe_seed=0,
                   batch=None, probe_dtype=None) -> GradCheckResult:
    """Check backward against central differences of forward.

    mode="dense" (default) differences every element: 2N forward calls. The
    same output differences are also contracted with `probes` random upstream
    gradients (one backward call each, no extra forward call), so a backward
    that ignores, squares or misreads grad_output fails even when grad_output
    is all ones. mode="fast" checks `probes` random projections in 2*probes
    forward calls and localises failing elements by group testing (see
    lib.gradcheck.fast.check_gradient_fast).

    A failure raises with the report and one line on how to ask lib.diagnose
    why; the diagnosis itself is a separate call, because it costs about
    2N + 5 more forward calls, more for the elements it measures again (the
    hint in the report gives the count).

    Args:
        forward: forward(x) -> y, any output shape; must be deterministic.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x: finite floating array (float16/32/64), never modified.
        grad_output: array of y's shape; the loss is sum(y * grad_output).
        rtol, atol: an element passes when |a - n| <= atol + rtol * max(|a|, |n|) + noise,
            noise measured only for elements that fail without it (lib.gradcheck.arithmetic).
        eps: the step; None picks the default step cbrt(machine eps) * max(1, |x|).
        raise_on_failure: raise GradientCheckError (with `.result`) on failure.
        mode: "dense" or "fast".
        probes: random upstream gradients (dense, default 1) or projections (fast, default 2).
        strict: True drops the rounding allowance: the plain rule above.
        probe_seed: seed of the dense probes (reported with the result).
        batch: None, or k >= 1 (dense mode): forward takes stacks (m, *x.shape) of m <= k inputs
            and returns (m, *y.shape), so the 2N points cost about 2N/k calls.
        probe_dtype: None, or "float64" (fast mode): the probes evaluate forward in float64
            for a float16/float32 x and see much smaller single-element errors
            (lib.gradcheck.fast.check_gradient_fast).

    Returns:
        GradCheckResult with per-element analytical, numerical, tolerance, noise, step,
        and one GradCheckResult per probe in `.probe_results`.
    """
    probes, batch, raise_on_failure = _mode_settings(mode, backward, probes, batch, probe_dtype, raise_on_failure)
    if mode == "fast":
        return check_gradient_fast(forward, backward, x, grad_output, probes=probes, rtol=rtol, atol=atol,
                                   eps=eps, raise_on_failure=raise_on_failure, probe_dtype=probe_dtype)
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    strict = _checks.boolean(strict, "strict")
    probe_seed = _checks.positive_int(probe_seed, "probe_seed", low=0, high=2**63 - 1)
    if eps is not None:
        _checks.positive_step(eps)
    outcome = dense_check(forward, backward, x, grad_output, rtol=rtol, atol=atol, eps=eps, probes=probes,
                           strict=strict, probe_seed=probe_seed, batch=batch)
    if not outcome.passed and raise_on_failure:
        hint = diagnosis_hint(np.size(x), dtype=np.asarray(x).dtype, failing=int(outcome.failing_indices.size))
        raise GradientCheckError(outcome, "\n".join([outcome.report(), hint]))
    return outcome


def _mode_settings(mode, backward, probes, batch, probe_dtype, raise_on_failure):
    """(probes, batch, raise_on_failure) checked; each option refused in the mode it does not apply to."""
    _checks.choice(mode, "mode", ("dense", "fast"))
    _checks.callable_arg(backward, "backward")
    raise_on_failure = _checks.boolean(raise_on_failure, "raise_on_failure")
    probes = _checks.positive_int(probes if probes is not None else (2 if mode == "fast" else 1), "probes",
                                  low=1 if mode == "fast" else 0)
    batch = None if batch is None else _checks.positive_int(batch, "batch")
    if batch is not None and mode == "fast":
        raise ValueError("batch applies to mode='dense'; fast mode makes only 2 * probes forward calls")
    if probe_dtype is not None and mode == "dense":
        raise ValueError("probe_dtype applies to mode='fast'; dense mode re-measures failing elements in float64 "
                         "by itself")
    return probes, batch, raise_on_failure
