"""The forward side of fast mode: g . (f(x+) - f(x-)) for a perturbation, with its rounding budget.

Every forward call of fast mode goes through a _Prober, two per measurement:
x+ first, then x-, both stored in x's dtype. The probes perturb every element
along its sign (`full`); the localisation perturbs one group of elements in a
private copy of x and restores it (`part`). The first output is copied at once,
because a forward may return a view of its input or a buffer it reuses; the
two outputs are subtracted element by element in float64 and only then reduced
with grad_output, as the dense mode does. Each measurement returns, beside the
numerator, the two terms its tolerance needs for rounding: the Hoeffding scale
eps * (||g f(x+)||_2 + ||g f(x-)||_2) and the float64 accumulation bound
(lib.gradcheck.projection derives the tolerance).
"""

from __future__ import annotations

import math

import numpy as np

from lib.gradcheck.blockwise import _BLOCK, _U64, _fill_plus, _flip_points, _holds_plus, _Norm, _same_bits
from lib.gradcheck.dense import upstream_from_uniform
from lib.gradcheck.differences import numeric_output


class _Prober:
    """Evaluates g . (f(x+) - f(x-)) and its rounding budget for a perturbation.

    Holds x (flat, its dtype), a private copy of it that localisation perturbs
    and restores (made on first use), a copy buffer for one output (its dtype),
    grad_output (flat, its own dtype: converted to float64 a block at a time)
    and block-sized float64 buffers, reused so that a 1e6-element check touches
    little fresh memory. Counts forward calls.

    A pair of calls may also be contracted with a random upstream gradient v
    (`upstream`: the Generator whose next values, through
    dense.upstream_from_uniform, are v in grad_output's dtype), drawn a block
    at a time beside grad_output: the outputs are read once and never kept.
    Each such pair appends (v . (f+ - f-), a bound on sum |v (f+ - f-)|,
    ||v f+||_2 + ||v f-||_2, eps) to `upstream_sides` (_UpstreamSums).
    """

    def __init__(self, forward, x: np.ndarray, grad: np.ndarray, native=None):
        self.forward = forward
        # The caller's dtype when x is its float64 copy (probe_dtype="float64"): forward must then compute in float64.
        self.native = None if native is None or np.dtype(native) == x.dtype else np.dtype(native)
        self.shape = x.shape
        self.x_flat = x.reshape(-1)
        self._work: np.ndarray | None = None
        self.grad_shape = grad.shape
        self.out_shape = None
        self.f_plus: np.ndarray | None = None
        self.g = grad.reshape(-1)
        block = min(self.g.size, _BLOCK)
        self.diff, self.scratch, self.g_block = np.empty(block), np.empty(block), np.empty(block)
        self.x_eps = float(np.finfo(x.dtype).eps)
        self.calls = 0
        self.upstream: np.random.Generator | None = None
        self.upstream_sides: list[tuple[float, float, float, float]] = []
        self.v_block = np.empty(block)
        self._g_norm_all: float | None = None  # ||grad_output||_2 over every output, once known

    @property
    def work(self) -> np.ndarray:
        if self._work is None:
            self._work = self.x_flat.copy()
        return self._work

    def _call(self, arr: np.ndarray) -> tuple[np.ndarray, float]:
        """(forward(arr) as an array, the machine epsilon of its dtype, at least x's)."""
        raw = numeric_output(self.forward(arr), "forward")
        self.calls += 1
        if self.out_shape is None:
            # The first call tells the output's shape, which grad_output must have.
            if raw.shape != self.grad_shape:
                raise ValueError(
                    f"grad_output must have the shape of forward(x), {raw.shape}; got {self.grad_shape}")
            self.out_shape = raw.shape
            if self.native is not None:
                _require_float64_arithmetic(raw, self.native)
        elif raw.shape != self.out_shape:
            raise ValueError(f"forward returned shape {raw.shape} on one perturbed input but {self.out_shape} on "
                             "another")
        if np.issubdtype(raw.dtype, np.floating):
            return raw, max(self.x_eps, float(np.finfo(raw.dtype).eps))
        return raw, self.x_eps

    def _pair(self, x_plus: np.ndarray, x_minus: np.ndarray, before_minus=None, *, few_change: bool = False):
        raw, eps_plus = self._call(x_plus)
        # Copy at once (in its own dtype): a forward may return a view of its
        # input, or a buffer it reuses on its next call.
        if self.f_plus is None or self.f_plus.dtype != raw.dtype:
            self.f_plus = np.empty(raw.size, dtype=raw.dtype)
        np.copyto(self.f_plus, raw.reshape(-1))
        if before_minus is not None:
            before_minus()
        f_minus, eps_minus = self._call(x_minus)
        # Used right away, before anything else runs: no copy needed.
        return self._difference(f_minus.reshape(-1), max(eps_plus, eps_minus), few_change=few_change)

    def full(self, buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray, *,
             check_input: bool = False, upstream: np.random.Generator | None = None):
        """Evaluate with every element perturbed along the signs `positive`.

        `buffer` (x's shape and dtype) holds x+ for the first call, then is
        turned into x- in place. Returns the _difference triple and, when
        check_input, whether forward left x+ as it was given. upstream: also
        contract the outputs with the next random upstream gradient it draws.
        """
        _fill_plus(buffer, positive, plus, minus)
        self.upstream = upstream
        intact = [True]

        def turn_to_minus():
            if check_input:
                intact[0] = _holds_plus(buffer, positive, plus, minus)
            _flip_points(buffer, plus, minus)

        return self._pair(buffer, buffer, before_minus=turn_to_minus), intact[0]

    def part(self, index: np.ndarray, plus: np.ndarray, minus: np.ndarray, original: np.ndarray):
        """Evaluate with only x[index] moved, to `plus` then `minus`; the private copy is restored."""
        flat = self.work
        work = flat.reshape(self.shape)

        def move_to_minus():
            flat[index] = minus

        try:
            flat[index] = plus
            return self._pair(work, work, before_minus=move_to_minus, few_change=index.size < flat.size // 2)
        finally:
            flat[index] = original

    def _difference(self, f_minus: np.ndarray, eps: float, *, few_change: bool = False):
        """(g . (f+ - f-), rounding scale, float64 accumulation bound).

        Walks the outputs in cache-sized blocks through reused buffers: each
        output is read from memory once, and nothing output-sized is allocated.
        few_change: only some elements moved, so look for outputs that did not.
        """
        f_plus, size = self.f_plus, self.g.size
        numerical = 0.0
        # plus, minus, diff, g: the norms the tolerance needs. Over every output (a full
        # probe) the norm of grad_output is the same each time: it is measured once.
        norms = [_Norm(), _Norm(), _Norm(), _Norm()]
        known_g_norm = None if few_change else self._g_norm_all
        upstream, self.upstream = self.upstream, None
        v_sums = _UpstreamSums() if upstream is not None else None
        with np.errstate(over="ignore"):  # for the norms (_Norm handles an overflowing square)
            for lo in range(0, size, _BLOCK):
                numerical += self._block(slice(lo, lo + _BLOCK), f_minus, norms, few_change=few_change,
                                         with_g_norm=known_g_norm is None, upstream=upstream, v_sums=v_sums)
        if not math.isfinite(numerical) and not (np.all(np.isfinite(f_plus)) and np.all(np.isfinite(f_minus))):
            raise ValueError("forward(x) returned non-finite values (inf or NaN); the check needs finite outputs")
        plus_norm, minus_norm, diff_norm, g_norm = norms
        rounding = eps * (plus_norm.value + minus_norm.value)
        if v_sums is not None:
            # Every output is kept for a full probe, so diff_norm is ||f+ - f-||_2 over all of them.
            self.upstream_sides.append((v_sums.numerical, v_sums.v.value * diff_norm.value,
                                        v_sums.plus.value + v_sums.minus.value, eps))
        if known_g_norm is None:
            known_g_norm = g_norm.value
            if not few_change:
                self._g_norm_all = known_g_norm
        # sum |diff_j g_j| <= ||diff||_2 ||g||_2 over the outputs kept (Cauchy-Schwarz).
        accumulation = size * _U64 * diff_norm.value * known_g_norm
        return numerical, rounding, accumulation

    def _block(self, block: slice, f_minus: np.ndarray, norms, *, few_change: bool, with_g_norm: bool,
               upstream, v_sums) -> float:
        """One block of `_difference`: its part of g . (f+ - f-), its norms added to `norms`."""
        p, m, gb = self.f_plus[block], f_minus[block], self.g[block]
        if gb.dtype != np.float64:
            gb = self.g_block[: gb.size]
            np.copyto(gb, self.g[block])
        d = self.diff[: gb.size]
        # Subtract element by element in float64 (exact for float32 outputs),
        # then reduce with grad_output. With at most _BLOCK outputs this is one
        # np.dot, the dense mode's exact arithmetic.
        np.subtract(p, m, out=d, dtype=np.float64)
        numerical = float(np.dot(d, gb))
        if v_sums is not None:
            v = self.v_block[: d.size]
            np.copyto(v, upstream_from_uniform(upstream.random(d.size, dtype=np.float32), self.g.dtype))
            v_sums.add(d, v, p, m, self.scratch[: d.size])
        # An output that comes out bitwise equal at x+ and x- does not depend on
        # the perturbed elements: both evaluations did the same arithmetic and
        # its rounding cancels in the difference. Leaving such outputs out pays
        # when they are many (a localisation group); otherwise keeping them in
        # is merely conservative.
        if few_change:
            changed = np.count_nonzero(d)
            if changed == 0:
                return numerical
            if 2 * changed < d.size:
                keep = np.flatnonzero(d)
                p, m, d, gb = p[keep], m[keep], d[keep], gb[keep]
        plus_norm, minus_norm, diff_norm, g_norm = norms
        scratch = self.scratch[: d.size]
        # The Hoeffding scale ||g * (|f+| + |f-|)||_2, bounded above by ||g * f+||_2 + ||g * f-||_2.
        np.multiply(p, gb, out=scratch)
        plus_norm.add(scratch)
        np.multiply(m, gb, out=scratch)
        minus_norm.add(scratch)
        diff_norm.add(d)
        if with_g_norm:
            g_norm.add(gb)
        return numerical

    def still_intact(self) -> bool:
        """The private copy, if made, still equals x (a forward that writes to its input breaks this)."""
        return self._work is None or _same_bits(self._work, self.x_flat)


class _UpstreamSums:
    """A random upstream gradient v's side of one pair of calls, added up block by block.

    Only the slope v . (f+ - f-) is exact; its tolerance takes bounds that need
    one pass less each (a backward that ignores or misreads grad_output misses
    by far more than they give away): every output counts as moved, and
    sum |v (f+ - f-)| <= ||v||_2 ||f+ - f-||_2 (Cauchy-Schwarz).
    """

    __slots__ = ("minus", "numerical", "plus", "v")

    def __init__(self) -> None:
        self.numerical = 0.0
        self.plus, self.minus, self.v = _Norm(), _Norm(), _Norm()

    def add(self, diff: np.ndarray, v: np.ndarray, f_plus: np.ndarray, f_minus: np.ndarray,
            scratch: np.ndarray) -> None:
        """diff = f+ - f- and v (float64), f+ and f- of one block; scratch: a float64 buffer of their size."""
        self.numerical += float(np.dot(diff, v))
        self.v.add(v)
        np.multiply(v, f_plus, out=scratch)
        self.plus.add(scratch)
        np.multiply(v, f_minus, out=scratch)
        self.minus.add(scratch)


def _require_float64_arithmetic(output: np.ndarray, native: np.dtype) -> None:
    """Refuse probes in float64 when forward does not compute in float64.

    A forward that casts its input back to x's dtype would silently move the
    float64 points onto x's grid, and the realised step would not be the one
    divided by. Its outputs give it away: not float64, or every non-zero
    output exactly a number of x's dtype.
    """
    if output.dtype != np.float64:
        raise ValueError(f"probe_dtype='float64' needs a forward that computes in float64: forward returned "
                         f"{output.dtype} for a float64 input; use probe_dtype=None")
    moved = output[output != 0]
    with np.errstate(over="ignore"):
        if moved.size and np.array_equal(moved.astype(native).astype(np.float64), moved):
            raise ValueError(f"probe_dtype='float64' needs a forward that computes in float64: every output of "
                             f"forward on a float64 input is a {native} number (does it cast its input to "
                             f"{native}?); use probe_dtype=None")
