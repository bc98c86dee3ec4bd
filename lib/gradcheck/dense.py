"""The dense mode: every element differenced (2N forward calls), its rounding measured where it matters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.gradcheck.arithmetic import plain_failures, remeasure_in_float64, rounding_slack
from lib.gradcheck.differences import (
    _central_differences,
    check_returned,
    numeric_output,
    validated_with_output,
)
from lib.gradcheck.kinks import Reference, Remeasured, remeasure_failing
from lib.gradcheck.result import GradCheckResult, SmallerStep, build_result, tolerance_for


def probe_gradients(shape, dtype, count: int, seed: int) -> np.ndarray:
    """`count` random upstream gradients of `shape`: magnitudes in [0.5, 2], random signs.

    Returns (count, *shape) in `dtype` (the dtype backward is given). Far from 0
    and from each other's pattern, so a backward that ignores, squares or
    misreads its upstream gradient cannot agree with the forward's slopes.
    One uniform draw r in [-1, 1) per value gives both: v = 0.5 sign(r) + 1.5 r.
    """
    r = np.random.default_rng(seed).random((count, *shape), dtype=np.float32)
    return upstream_from_uniform(r, dtype)


def upstream_from_uniform(r: np.ndarray, dtype) -> np.ndarray:
    """probe_gradients' values from its uniform draws r in [0, 1) (float32, overwritten), in `dtype`.

    Element by element, so a caller may draw and convert any run of the values on its own.
    """
    r *= np.float32(2)
    r -= np.float32(1)
    v = np.multiply(r, np.float32(1.5))
    v += np.copysign(np.float32(0.5), r, out=r)
    return v.astype(dtype, copy=False)


def _first_change(before: np.ndarray, after: np.ndarray) -> str:
    changed = np.flatnonzero(~((before == after) | (np.isnan(before) & np.isnan(after))).reshape(-1))
    i = int(changed[0])
    return (f"{changed.size} element(s), first at flat index {i} "
            f"({float(before.reshape(-1)[i])!r} became {float(after.reshape(-1)[i])!r})")


class _Guard:
    """Remembers x and grad_output, and names who changed them and where."""

    def __init__(self, x: np.ndarray, grad_output: np.ndarray):
        self.x, self.grad_output = x.copy(), np.array(grad_output, copy=True)
        self.notes: list[str] = []

    def after(self, who: str, work: np.ndarray, grad_output: np.ndarray | None = None) -> None:
        if not np.array_equal(work, self.x, equal_nan=True):
            note = f"Input mutation: {who} wrote into x: {_first_change(self.x, work)}"
            if note not in self.notes:
                self.notes.append(note)
            work[...] = self.x  # later calls must see the caller's x again
        if grad_output is not None and not np.array_equal(grad_output, self.grad_output, equal_nan=True):
            self.notes.append(f"Input mutation: {who} wrote into grad_output: "
                              f"{_first_change(self.grad_output, grad_output)}")


def _analytical(backward, grad, work, x_shape, guard: _Guard, who: str) -> np.ndarray:
    given = np.array(grad, copy=True)
    returned = backward(given, work)
    guard.after(who, work, given if who == "backward" else None)
    return check_returned(returned, x_shape, "backward", "x")


def _remeasured(forward, x, work, y0, grads, eps, out_dtype, analytical, found, *, rtol, atol):
    """(slack, smaller, extra forward calls) for the elements that fail the plain rule.

    slack (k, N): those elements are measured again at the same points with
    their rounding sums (2 calls each), and in float64 if they still fail (2
    more): see lib.gradcheck.arithmetic. Every other element gets no slack.
    smaller: a Remeasured (lib.gradcheck.kinks) for the ones that still fail,
    measured at halving steps against y0, the outputs at x that checking the
    arguments already made (no call of its own; one for forward(x) in float64
    when the steps are measured in float64); None when none is left.
    """
    slack = np.zeros_like(found.numerical)
    suspects = plain_failures(analytical, found, rtol, atol)
    if suspects.size == 0:
        return slack, None, 0
    again = _central_differences(forward, x, work, y0.shape, grads, eps, out_dtype, indices=suspects)
    rows, calls = remeasure_in_float64(forward, x, again, grads, analytical[:, suspects], rounding_slack(again),
                                          rtol=rtol, atol=atol, columns=suspects)
    slack[:, suspects] = rows
    reference = Reference(forward, x, y0.shape, y0)  # y0 is known; its float64 twin costs a call if needed
    smaller = remeasure_failing(forward, x, suspects, again, grads, analytical[:, suspects], rows, reference,
                                eps=eps, out_dtype=out_dtype, rtol=rtol, atol=atol)
    return slack, smaller, again.forward_calls + calls + reference.calls + (smaller.calls if smaller else 0)


def unstacked(forward):
    """A forward of one x, from a forward of stacks (k, *x.shape) -> (k, *y.shape) (the batch=k contract).

    Passes a stack of one, x[np.newaxis], a view: a forward that writes into
    its input writes into x, where the mutation guard sees it.
    """
    def one(x):
        try:
            returned = forward(x[np.newaxis])
        except Exception as error:
            error.add_note(f"check_gradient(batch=k) calls forward with a stack of inputs, shape (k, *x.shape); "
                           f"here a stack of 1, {(1, *x.shape)}")
            raise
        returned = numeric_output(returned, "forward")
        if returned.ndim == 0 or returned.shape[0] != 1:
            raise ValueError("with batch=k, forward takes a stack of inputs (k, *x.shape) and must return one "
                             f"output per input, (k, *y.shape); given a stack of 1 it returned shape "
                             f"{returned.shape}")
        return returned[0]

    return one


def dense_check(forward, backward, x, given, *, rtol, atol, eps, probes, strict, probe_seed,
                batch=None) -> GradCheckResult:
    """The dense check on validated settings: analytical sides, one loop, noise and smaller steps where needed."""
    stacked, forward = forward, (unstacked(forward) if batch else forward)
    x, work, y0, grad64, out_dtype = validated_with_output(forward, x, given)
    out_shape = y0.shape
    guard = _Guard(x, np.asarray(given))
    guard.after("forward", work)
    randoms = probe_gradients(out_shape, np.asarray(given).dtype, probes, probe_seed)
    analytical = [_analytical(backward, given, work, x.shape, guard, "backward")]
    analytical += [_analytical(backward, g, work, x.shape, guard, "backward (random grad_output)") for g in randoms]
    grads = np.concatenate([grad64.reshape(1, -1), randoms.reshape(probes, grad64.size).astype(np.float64)])
    analytical = np.stack([np.asarray(a, dtype=np.float64).reshape(-1) for a in analytical])
    found = _central_differences(stacked if batch else forward, x, work, out_shape, grads, eps, out_dtype,
                                 with_noise=False, batch=batch)
    guard.after("forward", work)
    slack, smaller, extra = None, None, 0
    if not strict:  # strict is the plain rule: no allowance, no re-measurement
        slack, smaller, extra = _remeasured(forward, x, work, y0, grads, eps, out_dtype, analytical, found,
                                            rtol=rtol, atol=atol)
        guard.after("forward", work)

    def result(k, notes=(), probe_results=()):
        return _row_result(k, x, analytical, found, slack, smaller, rtol=rtol, atol=atol,
                           forward_calls=found.forward_calls + 1 + extra, notes=notes, probes=probe_results)

    return result(0, tuple(guard.notes), tuple(result(k) for k in range(1, probes + 1)))


def _row_result(k: int, x, analytical, found, slack, smaller: Remeasured | None, *, rtol, atol, forward_calls,
                notes, probes) -> GradCheckResult:
    """Row k's GradCheckResult (0: grad_output, then the random probes), with what the smaller steps measured."""
    numerical, width = found.numerical[k], found.width
    noise = None if slack is None else slack[k]
    band, records = None, ()
    if smaller is not None:
        numerical, noise, width, band = smaller.applied(k, numerical, noise, width)
        records = smaller.records[k]
    return build_result(analytical[k].reshape(x.shape), numerical.reshape(x.shape), width.reshape(x.shape),
                        dtype=x.dtype, rtol=rtol, atol=atol, forward_calls=forward_calls,
                        slack=None if noise is None else noise.reshape(x.shape), input_mutated=bool(notes),
                        notes=notes, probes=probes, band=None if band is None else band.reshape(x.shape),
                        smaller_steps=records)


def confirm_elements(forward, x, grad_output, analytical, indices, *, rtol, atol, eps=None, strict=False,
                     out_dtype=np.float64):
    """The dense verdict on a few elements: each perturbed alone, judged by check_gradient's rule.

    Args:
        forward: the checked function; x: its (finite, floating) input, never modified.
        grad_output: array of forward(x)'s shape; analytical: backward(grad_output, x), x's shape.
        indices: flat indices of the elements to measure.
        out_dtype: the dtype forward returns (for the rounding allowance).
    Returns:
        (numerical, tolerance, step, forward_calls): (m,) float64 arrays for the m
        indices and the number of forward calls made (see `confirmed`).
    """
    done = confirmed(forward, x, grad_output, analytical, indices, rtol=rtol, atol=atol, eps=eps, strict=strict,
                     out_dtype=out_dtype)
    return done.numerical, done.tolerance, done.step, done.forward_calls


@dataclass(frozen=True)
class Confirmed:
    """The dense verdict on m elements measured alone (`confirmed`).

    numerical, tolerance, step: (m,) float64, what the dense mode reports for each
    (the smaller step's measurement for an element that needed one); default:
    (m,) float64, the default step's slope; smaller_steps: a SmallerStep for each
    element measured at smaller steps; forward_calls: every call made, y0's included.
    """

    numerical: np.ndarray
    tolerance: np.ndarray
    step: np.ndarray
    default: np.ndarray
    smaller_steps: tuple[SmallerStep, ...]
    forward_calls: int


def confirmed(forward, x, grad_output, analytical, indices, *, rtol, atol, eps=None, strict=False,
              out_dtype=np.float64, reference: Reference | None = None) -> Confirmed:
    """`confirm_elements` with the smaller steps' records: fast mode calls this for the elements its
    search isolates, so that what it reports about an element is exactly what the dense mode would.

    Each element costs 2 forward calls, 2 more for one re-measured in float64,
    and 2 per halving for one that still fails (lib.gradcheck.kinks); the first
    element that needs a halving also costs the call for y0 = forward(x), once
    per `reference` (pass the same Reference to several calls to share it).
    """
    indices = np.asarray(indices, dtype=np.int64)
    grads = np.asarray(grad_output, dtype=np.float64).reshape(1, -1)
    work = np.array(x, copy=True, order="C")
    out_shape = np.asarray(grad_output).shape
    found = _central_differences(forward, x, work, out_shape, grads, eps, out_dtype, indices)
    numerical, width = found.numerical, found.width
    a = np.asarray(analytical, dtype=np.float64).reshape(1, -1)[:, indices]
    slack, extra, smaller = np.zeros_like(numerical), 0, None
    if not strict:
        slack, extra = remeasure_in_float64(forward, x, found, grads, a, rounding_slack(found), rtol=rtol,
                                               atol=atol, columns=indices)
        reference = reference if reference is not None else Reference(forward, x, out_shape)
        before = reference.calls
        smaller = remeasure_failing(forward, x, indices, found, grads, a, slack, reference,
                                    eps=eps, out_dtype=out_dtype, rtol=rtol, atol=atol)
        extra += reference.calls - before + (smaller.calls if smaller else 0)
    tolerance = tolerance_for(a[0], numerical[0], rtol, atol) + slack[0]
    if smaller is None:
        return Confirmed(numerical[0], tolerance, width, numerical[0], (), found.forward_calls + extra)
    values, _, steps, band = smaller.applied(0, numerical[0], slack[0], width, over_columns=True)
    return Confirmed(values, np.where(np.isnan(band), tolerance, band), steps, numerical[0], smaller.records[0],
                     found.forward_calls + extra)
