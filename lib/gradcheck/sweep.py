"""The forward calls of a central difference, gathered in blocks and contracted at once.

A dense check must call forward twice per element; everything else it does
per element is overhead, and with a cheap forward (a few microseconds) the
overhead used to cost more than the calls. So the loop does only what cannot
be shared: move one element, call forward, copy its output into a row of a
preallocated block in the forward's own dtype (a plain memory copy), move the
element back. A block of rows is then differenced in float64 and contracted
with every upstream gradient by one vectorised dot product per row, on one BLAS thread: the
checker's own arithmetic must not wait for a core that the forward, or another
process, is using.

With `batch=k` the forward receives a stack of k perturbed copies of x, shape
(k, *x.shape), and returns (k, *y.shape): about 2N/k calls instead of 2N.

The differences are the same float64 numbers as a per-element loop's, each
output subtracted before anything is added; each slope's sum runs in an order
fixed by its own row, so an element measured alone (fast mode's confirmation)
gets exactly the slope it gets in a full check.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from threadpoolctl import ThreadpoolController

from lib.gradcheck.returns import numeric_output

#: Bytes of forward outputs one block holds (each of the two sides): a few MiB keeps
#: the rows in cache for the contraction and makes the per-block costs negligible.
BLOCK_BYTES = 4 * 2**20


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded BLAS libraries once per process


def one_blas_thread():
    """Context manager: BLAS on one thread inside, the caller's setting restored on exit."""
    return _controller().limit(limits=1, user_api="blas")


class Outputs:
    """Two blocks of rows, y(x + step) and y(x - step), in one dtype.

    The dtype is the forward's output dtype when it is a float of at most 64
    bits, so a row is filled by a plain copy; a forward that later returns
    another dtype promotes both blocks to float64, an exact conversion.
    """

    def __init__(self, rows: int, out_shape: tuple, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind != "f" or dtype.itemsize > 8:
            dtype = np.dtype(np.float64)
        self.out_shape = out_shape
        self.up = np.empty((rows, *out_shape), dtype)
        self.down = np.empty_like(self.up)
        # Reused by every block: a fresh buffer per block would be paged in anew each time.
        self.moved = np.empty((rows, int(np.prod(out_shape))), np.float64)

    def accept(self, returned, rows: int = 0) -> np.ndarray:
        """`returned` as an array of the block's row shape (or `rows` rows of it), promoting if needed."""
        array = numeric_output(returned, "forward")
        shape = (rows, *self.out_shape) if rows else self.out_shape
        if array.shape != shape:
            raise ValueError(f"forward returned shape {array.shape} on a perturbed input but {shape} on x")
        if array.dtype != self.up.dtype and self.up.dtype != np.float64:
            with np.errstate(invalid="ignore"):  # rows not filled yet hold whatever the memory held
                self.up, self.down = self.up.astype(np.float64), self.down.astype(np.float64)
        return array


def block_rows(count: int, out_size: int, itemsize: int, batch: int | None) -> int:
    """Rows per block: about BLOCK_BYTES of outputs, a multiple of `batch`, at most `count`."""
    rows = max(1, BLOCK_BYTES // max(1, out_size * itemsize))
    if batch:
        rows = max(batch, rows // batch * batch)
    return max(1, min(count, rows))


def fill(forward, work: np.ndarray, block: np.ndarray, plus, minus, outputs: Outputs) -> None:
    """Rows 0..len(block)-1 of `outputs`: forward at each element moved to plus, then minus.

    `work` (C order, x's values) is changed one element at a time and restored
    in a `finally` block, also when forward raises.
    """
    flat = work.reshape(-1)
    up, down, shape, dtype = outputs.up, outputs.down, outputs.out_shape, outputs.up.dtype
    for row, i in enumerate(block):
        original = flat[i]
        try:
            flat[i] = plus[i]
            y = forward(work)
            if type(y) is not np.ndarray or y.shape != shape or y.dtype != dtype:
                y = outputs.accept(y)
                up, down, dtype = outputs.up, outputs.down, outputs.up.dtype
            up[row] = y  # copied now: a forward may return a view of its input or reuse its buffer
            flat[i] = minus[i]
            y = forward(work)
            if type(y) is not np.ndarray or y.shape != shape or y.dtype != dtype:
                y = outputs.accept(y)
                up, down, dtype = outputs.up, outputs.down, outputs.up.dtype
            down[row] = y
        finally:
            flat[i] = original


def fill_batched(forward, stack: np.ndarray, work: np.ndarray, block: np.ndarray, plus, minus,
                 outputs: Outputs, batch: int) -> None:
    """As `fill`, with `batch` elements per call: row r of the stack has element block[r] moved.

    `stack` is (batch, *x.shape), each row a copy of x; the moved elements are
    put back from `work` after each group.
    """
    flat_stack = stack.reshape(batch, -1)
    flat = work.reshape(-1)
    for start in range(0, block.size, batch):
        group = block[start:start + batch]
        rows = np.arange(group.size)
        try:
            for side, points in (("up", plus), ("down", minus)):
                flat_stack[rows, group] = points[group]
                try:
                    y = forward(stack[:group.size])
                except Exception as error:
                    error.add_note(f"check_gradient(batch=k) calls forward with stacks of shape {stack.shape}")
                    raise
                y = outputs.accept(y, group.size)
                getattr(outputs, side)[start:start + group.size] = y  # after accept: it may promote
        finally:
            flat_stack[rows, group] = flat[group]


def contract(outputs: Outputs, count: int, grads: np.ndarray, magnitudes: np.ndarray | None):
    """Slopes and rounding sums of the first `count` rows: (k, count) each, before division by the step.

    Each output difference d = y+ - y- is formed in float64 before any sum,
    so outputs that did not move cancel exactly; then grads @ d, and
    |grads| @ (|y+| + |y-|) over the outputs that moved (zeros when
    `magnitudes` is None: the caller does not need them).
    """
    up = outputs.up[:count].reshape(count, -1)
    down = outputs.down[:count].reshape(count, -1)
    moved = np.subtract(up, down, out=outputs.moved[:count], dtype=np.float64)
    # vecdot: one dot per (gradient, row), each summed in an order that depends on
    # that row alone, so an element's slope is the same whatever block it is in.
    with one_blas_thread():
        values = np.vecdot(moved[:, np.newaxis, :], grads).T
        if magnitudes is None:
            return values, np.zeros_like(values)
        size = np.add(np.abs(up), np.abs(down), dtype=np.float64)
        return values, np.vecdot(np.where(moved != 0.0, size, 0.0)[:, np.newaxis, :], magnitudes).T
