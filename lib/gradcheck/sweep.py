"""The forward calls of a central difference, and the exact difference of each pair of outputs.

A dense check must call forward twice per element; everything else it does
per element is overhead, and with a cheap forward (a few microseconds) the
overhead used to cost more than the calls. Two things keep it small:

- `pairs` does per element only what cannot be shared: move one element, call
  forward, keep a copy of its output in one reused buffer (a forward may
  return a view of its input or reuse its own buffer), call forward again,
  move the element back. The buffer stays in cache from one element to the
  next, and no float64 copy of a whole output is made.
- `contract` finds the outputs that moved by comparing the two outputs in
  their own dtype (a float comparison is exact), then subtracts only those in
  float64 and contracts them with the upstream gradients. An output that did
  not move contributes exactly 0 to a slope, so this equals subtracting every
  output first, without a float64 pass over outputs that are equal. An
  elementwise forward moves one output per element.

With `batch=k` the forward receives a stack of k perturbed copies of x,
shape (k, *x.shape), and returns (k, *y.shape): about 2N/k calls instead of 2N
(`stacked_pairs`), and each group is contracted at once (`contract_stack`).

Each slope is summed in an order fixed by its own pair of outputs, so an
element measured alone (fast mode's confirmation) gets exactly the slope it
gets in a full check. Long contractions (a forward whose every output moves)
are cut into pieces of THREADED_DOT, each a one-thread BLAS dot product: a
thread waiting for a core another process holds would stall the whole check.
"""

from __future__ import annotations

import numpy as np

from lib.gradcheck.returns import numeric_output

#: OpenBLAS splits a dot product over threads above about 10,000 elements; pieces of
#: this length stay on the calling thread.
THREADED_DOT = 8192

#: Outputs up to this size are contracted a whole stack at a time (einsum over float64 copies);
#: longer ones pair by pair over the outputs that moved, which touches far less memory.
WHOLE_ROWS = 2048

FINITE_MESSAGE = "forward(x) returned non-finite values (inf or NaN); the check needs finite outputs"


def accept(returned, shape: tuple) -> np.ndarray:
    """`returned` as a real numeric array of `shape`, or an error naming forward."""
    array = numeric_output(returned, "forward")
    if array.shape != shape:
        raise ValueError(f"forward returned shape {array.shape} on a perturbed input but {shape} on x")
    return array


def _kept_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def pairs(forward, work: np.ndarray, columns: np.ndarray, plus, minus, out_shape: tuple, out_dtype):
    """Yield (y+, y-) for each flat index in `columns`: forward with that element at plus, then minus.

    plus, minus: the two points of each element of `columns`, in the same order.

    y+ is a copy that the next pair overwrites, y- is what forward returned (it
    may be a view of `work`): use both before asking for the next pair. `work`
    (C order, x's values) is changed one element at a time and restored in a
    `finally` block, also when forward raises.
    """
    flat = work.reshape(-1)
    kept = np.empty(out_shape, _kept_dtype(out_dtype))
    dtype = kept.dtype
    # Python ints and floats index and assign several times faster than numpy scalars, and a
    # value of x's dtype survives the round trip through a Python float exactly.
    for i, high, low in zip(columns.tolist(), plus.tolist(), minus.tolist(), strict=True):
        original = flat[i]
        try:
            flat[i] = high
            y = forward(work)
            if y.__class__ is not np.ndarray or y.dtype is not dtype or y.shape != out_shape:
                y = accept(y, out_shape)
                if not np.can_cast(y.dtype, kept.dtype, "safe"):  # keep every bit of a wider output
                    kept, dtype = np.empty(out_shape, np.float64), np.dtype(np.float64)
            np.copyto(kept, y)
            flat[i] = low
            y = forward(work)
            if y.__class__ is not np.ndarray or y.dtype is not dtype or y.shape != out_shape:
                y = accept(y, out_shape)
            yield kept, y  # before the element moves back: y may be a view of work
        finally:
            flat[i] = original


def stacked_pairs(forward, work, columns, plus, minus, out_shape, batch: int):
    """Yield (start, y+ stack, y- stack) for groups of `batch` columns, one forward call per side.

    Row r of the stack forward gets is x with element columns[start + r] moved
    (to plus[start + r], then minus[start + r]); the stacks it returns are
    (m, *y.shape), m <= batch.
    """
    stack = np.repeat(work[np.newaxis], min(batch, columns.size), axis=0)
    flat_stack = stack.reshape(stack.shape[0], -1)
    flat = work.reshape(-1)
    for start in range(0, columns.size, batch):
        group = columns[start:start + batch]
        rows = np.arange(group.size)
        try:
            sides = []
            for points in (plus, minus):
                flat_stack[rows, group] = points[start:start + batch]
                try:
                    returned = forward(stack[:group.size])
                except Exception as error:
                    error.add_note(f"check_gradient(batch=k) calls forward with stacks of shape {stack.shape}")
                    raise
                sides.append(np.array(accept(returned, (group.size, *out_shape))))  # a copy, as pairs keeps y+
        finally:
            flat_stack[rows, group] = flat[group]
        yield start, sides[0], sides[1]


def moved_outputs(y_plus: np.ndarray, y_minus: np.ndarray):
    """(up, down, moved, d): both outputs flat, the flat indices where they differ, d = y+ - y- there.

    A comparison in the outputs' own dtype finds the moved outputs exactly;
    d is formed in float64 from those alone (every other output contributes
    exactly 0 to any sum over d). Raises ValueError if either output holds inf
    or NaN (y-'s unmoved outputs equal y+'s, its moved ones reach d).
    """
    up, down = y_plus.reshape(-1), y_minus.reshape(-1)
    if not np.isfinite(up).all():
        raise ValueError(FINITE_MESSAGE)
    moved = np.flatnonzero(up != down)
    d = np.subtract(up[moved], down[moved], dtype=np.float64)
    if not np.isfinite(d).all():
        raise ValueError(FINITE_MESSAGE)
    return up, down, moved, d


def contract(y_plus: np.ndarray, y_minus: np.ndarray, grads: np.ndarray, magnitudes: np.ndarray | None):
    """Slopes and rounding sums of one pair: (grads @ d, |grads| @ (|y+| + |y-|) over the moved outputs).

    Both are (k,), still to be divided by the step (the sums also scaled by u);
    the sums are None when `magnitudes` is None. See `moved_outputs`.
    """
    up, down, moved, d = moved_outputs(y_plus, y_minus)
    values = _dot(grads[:, moved], d)
    if magnitudes is None:
        return values, None
    return values, _dot(magnitudes[:, moved], np.add(np.abs(up[moved]), np.abs(down[moved]), dtype=np.float64))


def contract_stack(ups: np.ndarray, downs: np.ndarray, grads: np.ndarray, magnitudes: np.ndarray | None):
    """`contract` for m pairs at once: (k, m) slopes and (k, m) sums or None, from (m, *y.shape) stacks.

    The differences are the same float64 numbers; for outputs up to WHOLE_ROWS
    the sums run over whole rows (einsum, on the calling thread), so a slope
    may differ from the one-pair contraction in its last bits.
    """
    up, down = ups.reshape(ups.shape[0], -1), downs.reshape(downs.shape[0], -1)
    if up.shape[1] > WHOLE_ROWS:  # long rows: difference only what moved, pair by pair
        rows = [contract(a, b, grads, magnitudes) for a, b in zip(up, down, strict=True)]
        values = np.stack([r[0] for r in rows], axis=1)
        return values, None if magnitudes is None else np.stack([r[1] for r in rows], axis=1)
    if not np.isfinite(up).all():
        raise ValueError(FINITE_MESSAGE)
    d = up.astype(np.float64) - down.astype(np.float64)  # exact zeros where nothing moved
    values = np.einsum("mj,kj->km", d, grads)
    if magnitudes is None:
        return values, None
    size = np.where(d != 0.0, np.abs(up.astype(np.float64)) + np.abs(down.astype(np.float64)), 0.0)
    return values, np.einsum("mj,kj->km", size, magnitudes)


def _dot(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """rows @ v, (k,), in pieces of THREADED_DOT when v is long (one BLAS thread each)."""
    if v.size <= THREADED_DOT:
        return rows @ v
    return sum(rows[:, lo:lo + THREADED_DOT] @ v[lo:lo + THREADED_DOT] for lo in range(0, v.size, THREADED_DOT))
