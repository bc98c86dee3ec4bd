"""The central-difference loop: numerical gradients of sum(forward(x) * grad_output)."""

from __future__ import annotations

import numpy as np

from lib import _checks
from lib.gradcheck.steps import _realised_points, default_step


def _call_forward(forward, x: np.ndarray, expected_shape=None) -> np.ndarray:
    # Copy to float64 at once: a forward that returns a view of its input would
    # otherwise change under us when the next element is perturbed.
    returned = forward(x)
    try:
        out = np.array(returned, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"forward must return a numeric array; got {type(returned).__name__}") from None
    if returned is None or out.dtype == object:
        raise TypeError(f"forward must return a numeric array; got {type(returned).__name__}")
    if expected_shape is not None and out.shape != expected_shape:
        raise ValueError(
            f"forward returned shape {out.shape} on a perturbed input but {expected_shape} on x"
        )
    if not np.all(np.isfinite(out)):
        raise ValueError("forward(x) returned non-finite values (inf or NaN); the check needs finite outputs")
    return out


def _validated_inputs(forward, x, grad_output):
    _checks.callable_arg(forward, "forward")
    x = _checks.float_array(x, "x")
    # C order, so that work.reshape(-1) is a view and a perturbation reaches forward.
    work = np.array(x, copy=True, order="C")
    out = _call_forward(forward, work)
    grad_output = np.asarray(grad_output)
    if grad_output.shape != out.shape:
        raise ValueError(
            f"grad_output must have the shape of forward(x), {out.shape}; got {grad_output.shape}"
        )
    if not np.issubdtype(grad_output.dtype, np.number) or np.iscomplexobj(grad_output):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad_output.dtype}")
    if not np.all(np.isfinite(grad_output)):
        raise ValueError("grad_output must be finite")
    return x, work, out.shape, grad_output.astype(np.float64)


def _raise_if_not_finite(*outputs: np.ndarray) -> None:
    for out in outputs:
        if not np.all(np.isfinite(out)):
            raise ValueError(
                "forward(x) returned non-finite values (inf or NaN); the check needs finite outputs"
            )


def _central_differences(forward, x, work, out_shape, grad64, eps):
    """Core loop. Returns (numerical, realised step, forward calls); never changes x.

    The loop body does only what each element needs (two forward calls, two
    float64 copies, one subtraction, one dot product); everything that can be
    done for all elements at once (the perturbed values, the realised widths,
    the division) is done outside it, so the checker costs little beyond the
    2N forward calls themselves.
    """
    half = default_step(x) if eps is None else np.full(x.shape, _checks.positive_step(eps))
    plus, minus, width = _realised_points(x, half)
    flat_work = work.reshape(-1)
    g = grad64.reshape(-1)
    numerical = np.empty(x.size, dtype=np.float64)
    for i in range(x.size):
        original = flat_work[i]
        try:
            flat_work[i] = plus[i]
            # Copy to float64 at once: a forward that returns a view of its input
            # would otherwise change under us when the element is moved again.
            out_plus = np.array(forward(work), dtype=np.float64)
            flat_work[i] = minus[i]
            out_minus = np.array(forward(work), dtype=np.float64)
        finally:
            flat_work[i] = original
        if out_plus.shape != out_shape or out_minus.shape != out_shape:
            bad = out_plus.shape if out_plus.shape != out_shape else out_minus.shape
            raise ValueError(f"forward returned shape {bad} on a perturbed input but {out_shape} on x")
        # Subtract element by element in float64, then reduce with grad_output.
        value = np.dot((out_plus - out_minus).reshape(-1), g)
        # Any inf or NaN in either output makes the difference, and so the dot
        # product, non-finite: one scalar test instead of two array scans.
        if not -np.inf < value < np.inf:
            _raise_if_not_finite(out_plus, out_minus)
        numerical[i] = value
    # Divide by the realised width, x_i+ - x_i- as stored, not the nominal 2*eps.
    numerical /= width
    return numerical.reshape(x.shape), width.reshape(x.shape), 2 * x.size


def numerical_gradient(forward, x, grad_output, eps=None) -> np.ndarray:
    """Central-difference gradient of sum(forward(x) * grad_output), float64, x's shape.

    Args:
        forward: callable, forward(x) -> array; must be deterministic.
        x: floating array (float16/32/64); never modified.
        grad_output: array of forward(x)'s shape (the upstream gradient).
        eps: half-step. None picks cbrt(eps_dtype) * max(1, |x_i|); a number is
            used as given for every element.
    """
    x, work, out_shape, grad64 = _validated_inputs(forward, x, grad_output)
    numerical, _, _ = _central_differences(forward, x, work, out_shape, grad64, eps)
    return numerical

