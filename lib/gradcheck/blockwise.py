"""Block-by-block float64 arithmetic and bit operations over fast mode's large flat arrays.

Fast mode makes a few passes over x (1e6 elements and more) and over
forward's outputs. Each pass walks cache-sized blocks through reused buffers,
so that a large check touches little fresh memory and every dot product is a
one-thread BLAS call. Here: the block sizes, a Euclidean norm that cannot
overflow, a blocked dot product, and the bit operations that build x+ and x-
from the two points of every element.
"""

from __future__ import annotations

import math

import numpy as np

# Unit roundoff of float64, for the accumulation error of each dot product.
_U64 = 2.0**-53

# Elements per block when a pass over a large array is cut into cache-sized
# pieces (64 KiB of float64). Small enough, too, that OpenBLAS computes each dot
# product on one thread: threaded dot products stall whenever the other core is
# busy, which on a shared 2-core machine is often.
_BLOCK = 1 << 13

# Passes with no dot product (element-wise arithmetic and comparisons) take
# bigger blocks (512 KiB of float64), for fewer calls from Python.
_WIDE_BLOCK = 1 << 16


class _Norm:
    """A Euclidean norm added up block by block without overflow.

    Sums of squares are added as they are while they stay finite (the common
    case, one dot product a block); once a square overflows, as it does for
    values beyond about 1e154 in float64, the sum is kept as scale * sqrt(ssq)
    with every block divided by the running scale first (LAPACK's nrm2 idea).
    `add` runs in passes of thousands of blocks, so it leaves the floating-point
    error state to its caller: call it inside np.errstate(over="ignore"), or an
    overflowing square warns before it is handled.
    """

    __slots__ = ("scale", "ssq")

    def __init__(self) -> None:
        self.scale, self.ssq = 0.0, 0.0  # scale 0: ssq is a plain sum of squares

    def add(self, v: np.ndarray) -> None:
        if self.scale == 0.0:
            total = self.ssq + float(np.dot(v, v))
            if math.isfinite(total):
                self.ssq = total
                return
            self.scale, self.ssq = math.sqrt(self.ssq) or 1.0, 1.0 if self.ssq else 0.0
        largest = float(np.max(np.abs(v))) if v.size else 0.0
        if largest > self.scale:
            self.ssq *= (self.scale / largest) ** 2
            self.scale = largest
        if largest:
            r = v / self.scale
            self.ssq += float(np.dot(r, r))

    @property
    def value(self) -> float:
        return math.sqrt(self.ssq) if self.scale == 0.0 else self.scale * math.sqrt(self.ssq)


def _norm(v: np.ndarray) -> float:
    norm = _Norm()
    with np.errstate(over="ignore"):
        norm.add(np.asarray(v, dtype=np.float64).reshape(-1))
    return norm.value


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """u . v in float64, summed over _BLOCK-sized pieces (each a one-thread BLAS call)."""
    return float(sum(np.dot(u[lo : lo + _BLOCK], v[lo : lo + _BLOCK]) for lo in range(0, u.size, _BLOCK)))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality of two arrays of one float dtype (NaN equals the same NaN)."""
    kind = _UNSIGNED[a.dtype.itemsize]
    return bool(np.array_equal(np.ascontiguousarray(a).view(kind), np.ascontiguousarray(b).view(kind)))


def _fill_plus(buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> None:
    """buffer = plus where positive else minus (flat views of x's dtype), by bit operations.

    A mask-driven np.where on random signs mispredicts half its branches;
    these are streaming integer passes over cached blocks and give the same bits.
    """
    kind = _UNSIGNED[plus.dtype.itemsize]
    out, plus_bits, minus_bits = buffer.reshape(-1).view(kind), plus.view(kind), minus.view(kind)
    flip = np.empty(min(plus.size, _WIDE_BLOCK), dtype=kind)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        bits = out[lo:hi]
        flip_block = flip[: bits.size]
        np.bitwise_xor(plus_bits[lo:hi], minus_bits[lo:hi], out=flip_block)  # plus ^ minus
        np.copyto(bits, positive[lo:hi].view(np.uint8), casting="unsafe")  # 1 where positive
        np.subtract(bits, 1, out=bits)  # 0 where positive, all ones elsewhere
        bits &= flip_block  # plus ^ minus where negative, 0 elsewhere
        bits ^= plus_bits[lo:hi]  # plus where positive, minus elsewhere


def _flip_points(buffer: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> None:
    """Replace each element of buffer (plus or minus) by the other of its two points."""
    kind = _UNSIGNED[plus.dtype.itemsize]
    out, plus_bits, minus_bits = buffer.reshape(-1).view(kind), plus.view(kind), minus.view(kind)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        out[lo:hi] ^= plus_bits[lo:hi]
        out[lo:hi] ^= minus_bits[lo:hi]


def _holds_plus(buffer: np.ndarray, positive: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> bool:
    """buffer still holds exactly what _fill_plus put there (a forward may write to its input)."""
    kind = _UNSIGNED[plus.dtype.itemsize]
    given = buffer.reshape(-1).view(kind)
    again = np.empty(min(plus.size, _WIDE_BLOCK), dtype=plus.dtype)
    for lo in range(0, plus.size, _WIDE_BLOCK):
        hi = lo + _WIDE_BLOCK
        block = again[: given[lo:hi].size]
        _fill_plus(block, positive[lo:hi], plus[lo:hi], minus[lo:hi])
        if not np.array_equal(block.view(kind), given[lo:hi]):
            return False
    return True
