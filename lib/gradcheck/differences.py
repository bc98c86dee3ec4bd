"""The central-difference loop: numerical gradients of sum(forward(x) * grad_output)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib import _checks
from lib.gradcheck import sweep
from lib.gradcheck.returns import check_returned, numeric_output  # noqa: F401 - re-exported
from lib.gradcheck.steps import _realised_points, default_step


def _call_forward(forward, x: np.ndarray, expected_shape=None):
    """forward(x) as float64 (a copy) and the dtype it returned; refuses what cannot be checked."""
    array = numeric_output(forward(x), "forward")
    if expected_shape is not None and array.shape != expected_shape:
        raise ValueError(f"forward returned shape {array.shape} on a perturbed input but {expected_shape} on x")
    # Copy to float64 at once: a forward that returns a view of its input would
    # otherwise change under us when the next element is perturbed.
    out = np.array(array, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError("forward(x) returned non-finite values (inf or NaN); the check needs finite outputs")
    return out, array.dtype


def require_finite(x: np.ndarray) -> np.ndarray:
    """x itself, or ValueError naming its first non-finite element."""
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(-1)))[0])
        raise ValueError(f"x must be finite: x.flat[{bad}] = {float(x.reshape(-1)[bad])!r}; a gradient check "
                         "needs a point where the function is defined")
    return x


def _validated_inputs(forward, x, grad_output):
    """Check the arguments at the boundary; returns (x, work copy, output shape, grad64, output dtype)."""
    x, work, y0, grad64, out_dtype = validated_with_output(forward, x, grad_output)
    return x, work, y0.shape, grad64, out_dtype


def validated_with_output(forward, x, grad_output):
    """`_validated_inputs` with y0 = forward(x) (float64, a copy) in place of its shape: the one call
    at x that checking the arguments makes, kept for whoever needs the outputs at x (lib.gradcheck.kinks)."""
    _checks.callable_arg(forward, "forward")
    x = require_finite(_checks.float_array(x, "x"))
    # C order, so that work.reshape(-1) is a view and a perturbation reaches forward.
    work = np.array(x, copy=True, order="C")
    out, out_dtype = _call_forward(forward, work)
    grad_output = np.asarray(grad_output)
    if grad_output.shape != out.shape:
        raise ValueError(
            f"grad_output must have the shape of forward(x), {out.shape}; got {grad_output.shape}"
        )
    if not np.issubdtype(grad_output.dtype, np.number) or np.iscomplexobj(grad_output):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad_output.dtype}")
    if not np.all(np.isfinite(grad_output)):
        raise ValueError("grad_output must be finite")
    return x, work, out, grad_output.astype(np.float64), out_dtype


@dataclass(frozen=True)
class Differences:
    """What the central-difference loop measured.

    Attributes:
        numerical: (k, N) float64, one row per upstream gradient (row 0 the
            caller's grad_output, then the random probes): the slope of
            sum(forward(x) * g) along each element, divided by the realised step.
        noise: (k, N) float64, a bound on the rounding in each numerical value:
            u * sum_j |g_j| * (|y+_j| + |y-_j|) / width over the outputs j that
            moved, u the unit roundoff of the forward's output dtype. Each output
            was rounded to that dtype at least once, by up to u * |y_j|, and an
            output that did not move contributes exactly nothing.
        width: (N,) float64, the realised step x_i+ - x_i- of each element.
        forward_calls: how many times forward was called (2N).
        plus, minus: (N,) the points x_i + h_i and x_i - h_i as stored in x's dtype.
    """

    numerical: np.ndarray
    noise: np.ndarray
    width: np.ndarray
    forward_calls: int
    plus: np.ndarray
    minus: np.ndarray


def unit_roundoff(dtype) -> float:
    """Half the machine epsilon of a floating dtype (the largest relative rounding error); 0 otherwise."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) / 2 if np.issubdtype(dtype, np.floating) else 0.0


def _central_differences(forward, x, work, out_shape, grads, eps, out_dtype=np.float64,
                         indices=None, with_noise=True, batch=None) -> Differences:
    """Core loop over the elements; never changes x.

    Args:
        grads: (k, M) float64, the upstream gradients to contract each output
            difference with (M = outputs): the caller's first, then probes.
        out_dtype: dtype of the forward's output, whose rounding the noise bound uses.
        indices: flat indices of the elements to difference (default all); the
            result's columns follow them (width then flat, not x's shape).
        with_noise: False skips the rounding sums (noise all 0), for a first pass
            in which only elements that fail the plain rule will need them.
        batch: None calls forward(x) once per point; k passes stacks of k
            perturbed copies of x, (k, *x.shape), to a forward that returns
            (k, *y.shape) (see lib.gradcheck.sweep).

    The forward calls and each pair's exact difference are `sweep`'s; the rest is
    done for all elements at once, so the checker costs little beyond its calls.
    """
    columns = np.arange(x.size) if indices is None else np.asarray(indices, dtype=np.int64)
    plus, minus, width = _points_of(x, columns if indices is not None else None, eps)
    grads = np.atleast_2d(grads)
    magnitudes = np.abs(grads) if with_noise else None
    numerical = np.empty((grads.shape[0], columns.size), dtype=np.float64)
    noise = np.zeros_like(numerical)
    if batch:
        for start, ups, downs in sweep.stacked_pairs(forward, work, columns, plus, minus, out_shape, batch):
            done = slice(start, start + ups.shape[0])
            numerical[:, done], sums = sweep.contract_stack(ups, downs, grads, magnitudes)
            if sums is not None:
                noise[:, done] = sums
    else:
        for k, (y_plus, y_minus) in enumerate(sweep.pairs(forward, work, columns, plus, minus, out_shape,
                                                          out_dtype)):
            numerical[:, k], sums = sweep.contract(y_plus, y_minus, grads, magnitudes)
            if sums is not None:
                noise[:, k] = sums
    if not np.isfinite(numerical).all():
        raise ValueError(sweep.FINITE_MESSAGE)
    # Divide by the realised width, x_i+ - x_i- as stored, not the nominal 2*eps.
    numerical /= width
    noise *= unit_roundoff(out_dtype) / np.abs(width)
    width = width if indices is not None else width.reshape(x.shape)
    calls = 2 * columns.size if not batch else 2 * -(-columns.size // batch)
    return Differences(numerical, noise, width, calls, plus, minus)


def _points_of(x: np.ndarray, columns: np.ndarray | None, eps):
    """Flat (plus, minus, width) of the elements `columns` (None: all of x), in that order.

    A few elements (fast mode's confirmation, the re-measured suspects) get
    their points alone, not a whole x's worth of arrays; the values are the
    same, element by element. Should one of them be refused, the message is
    the one the whole x gets, naming the element's index in x.
    """
    if columns is None:
        half = default_step(x) if eps is None else np.full(x.shape, _checks.positive_step(eps))
        return _realised_points(x, half)
    chosen = x.reshape(-1)[columns]
    half = default_step(chosen) if eps is None else np.full(chosen.shape, _checks.positive_step(eps))
    try:
        return _realised_points(chosen, half)
    except ValueError:
        _points_of(x, None, eps)  # raises the message naming the index in x
        raise


def numerical_gradient(forward, x, grad_output, eps=None) -> np.ndarray:
    """Central-difference gradient of sum(forward(x) * grad_output), float64, x's shape.

    Args:
        forward: callable, forward(x) -> array; must be deterministic.
        x: floating array (float16/32/64); never modified.
        grad_output: array of forward(x)'s shape (the upstream gradient).
        eps: the step. None picks cbrt(eps_dtype) * max(1, |x_i|); a number is
            used as given for every element.
    """
    x, work, out_shape, grad64, out_dtype = _validated_inputs(forward, x, grad_output)
    return _central_differences(forward, x, work, out_shape, grad64.reshape(1, -1), eps,
                                out_dtype).numerical[0].reshape(x.shape)

