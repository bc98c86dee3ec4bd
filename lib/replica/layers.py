"""The original library's dropout and dropout2d, as Mojo 0.25.7 computed them.

These differ from `lib.dropout` on purpose: they draw from the emulated
process-wide generator (`lib.replica.rng.MojoRandom`), reseed it on every call
when seed > 0 (seed 0 means "do not seed": the stream goes on), and compare
with Mojo's types: for float32 and float16 inputs the draw and p are both
rounded to float32 (`Float32(u) > Float32(p)`), for float64 they are compared
as they are. The scale 1/(1-p) is computed in float64 and stored in the
input's dtype, and the output is `(x * mask) * scale`, two multiplications in
the input's dtype, in that order.
"""

from __future__ import annotations

import numpy as np

from lib.replica.rng import MojoRandom


def keep_mask(draws: np.ndarray, p: float, dtype: np.dtype) -> np.ndarray:
    """1 where an element is kept, 0 where dropped, in `dtype` (draws: float64 uniforms)."""
    # Mojo's float32 and float16 paths round both sides to float32 first
    kept = draws > p if np.dtype(dtype) == np.float64 else draws.astype(np.float32) > np.float32(p)
    return kept.astype(dtype)


def scale_in(p: float, dtype: np.dtype):
    """1/(1-p) computed in float64, then stored in `dtype` (Mojo's full_like(x, scale))."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


def _reseed(seed: int, state: MojoRandom, reseed: bool) -> None:
    if reseed and seed > 0:
        state.seed(seed)


def original_dropout(x: np.ndarray, p: float, seed: int, state: MojoRandom, reseed: bool = True):
    """Dropout as the original test called it: returns (out, mask), both of x's shape and dtype.

    Args:
        x: float16/32/64 array of any shape; one draw per element, row-major.
        p: drop probability in [0, 1).
        seed: > 0 reseeds `state` first (when `reseed`); 0 draws on from the current state.
        state: the emulated process-wide generator (shared between calls).
        reseed: False ignores `seed` (a generator seeded once by the caller).
    """
    _reseed(seed, state, reseed)
    mask = keep_mask(state.uniform(x.shape), p, x.dtype)
    return np.asarray((x * mask) * scale_in(p, x.dtype)), mask


def original_dropout2d(x: np.ndarray, p: float, seed: int, state: MojoRandom, reseed: bool = True):
    """Channel dropout of an (N, C, H, W) array: one draw per (n, c), n-major.

    Returns (out, mask) with mask broadcast to x's full shape, as the original
    returned it (the backward multiplies by that full mask).
    """
    _reseed(seed, state, reseed)
    batch, channels = x.shape[:2]
    channel_mask = keep_mask(state.uniform((batch, channels)), p, x.dtype)
    mask = np.ascontiguousarray(np.broadcast_to(channel_mask[:, :, None, None], x.shape))
    return np.asarray((x * mask) * scale_in(p, x.dtype)), mask


def original_dropout_backward(grad_output: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """(grad_output * mask) * scale in grad_output's dtype: both tests' backward."""
    return np.asarray((grad_output * mask) * scale_in(p, grad_output.dtype))
