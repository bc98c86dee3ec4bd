"""Inverted dropout and channel dropout (dropout2d), forward and backward.

Forward keeps each element with probability 1 - p and scales kept elements by
1 / (1 - p), so the expected output equals the input:

    out = x * mask * (1 / (1 - p))           mask[i] = 1 if u[i] > p else 0

Backward is one chain-rule step. `out` depends on `x` element by element, so
the Jacobian is diagonal with entries mask / (1 - p), and

    grad_x = grad_out * mask * (1 / (1 - p))

The mask is the only state that links the two: a backward is correct only with
the mask that its forward actually used. Passing the same `seed` reproduces a
mask exactly, which is what makes a stochastic layer checkable at all.
"""

from __future__ import annotations

import math

import numpy as np

from lib import _checks


def _scale(p: float, dtype: np.dtype):
    # 1/(1-p) rounded once to the working dtype, so forward and backward apply
    # bit-for-bit the same factor.
    scale = 1.0 / (1.0 - p)
    largest = float(np.finfo(dtype).max)
    if scale > largest:
        # An infinite scale would turn dropped elements into 0 * inf = NaN.
        # Round the stated bound down, so that the number printed is itself accepted.
        bound = math.floor((1 - 1 / largest) * 1e6) / 1e6
        raise ValueError(f"p={p!r} is too close to 1 for {np.dtype(dtype)}: 1/(1-p) = {scale:.6g} exceeds "
                         f"the dtype's largest value {largest:.6g}; accepted: p <= {bound:.6f}")
    return dtype.type(scale)


def _draw_keep(shape, p: float, seed, rng) -> np.ndarray:
    generator = _checks.seed_or_rng(seed, rng)
    # Keep when u > p, as in the original; P(u > p) = 1 - p for u ~ U[0, 1).
    return generator.random(shape) > p


def dropout(x, p, training=True, seed=None, rng=None):
    """Inverted dropout.

    Args:
        x: floating array (float16, float32 or float64), any shape.
        p: drop probability in [0, 1).
        training: False returns a copy of x and an all-ones mask (inference).
        seed: int in [0, 2**63): the same seed gives the same mask on every call.
        rng: a numpy Generator to draw from (advances it). Not with `seed`.
            With neither, the mask comes from fresh OS entropy.

    Returns:
        (out, mask): both with x's shape and dtype; mask holds 0.0 / 1.0.
    """
    x = _checks.float_array(x, "x")
    p = _checks.drop_probability(p)
    training = _checks.boolean(training, "training")
    if not training or p == 0.0:
        _checks.seed_or_rng(seed, rng)  # still refuse seed together with rng
        return x.copy(), np.ones_like(x)
    mask = _draw_keep(x.shape, p, seed, rng).astype(x.dtype)
    # np.asarray: numpy arithmetic on 0-d arrays returns scalars
    return np.asarray(x * mask * _scale(p, x.dtype)), mask


def _check_mask(mask, expected_shape, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != expected_shape:
        raise ValueError(f"mask must have shape {expected_shape} {what}; got {mask.shape}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 and 1 (the keep/drop decisions from the forward)")
    return mask


def dropout_backward(grad_output, mask, p):
    """Gradient of dropout with respect to its input.

    Args:
        grad_output: floating array, dL/d(out), shape S.
        mask: the 0/1 mask returned by the forward, shape S.
        p: the drop probability the forward used, in [0, 1).

    Returns:
        grad_input: dL/dx = grad_output * mask / (1 - p), shape S, grad_output's dtype.
    """
    grad_output = _checks.float_array(grad_output, "grad_output")
    p = _checks.drop_probability(p)
    mask = _check_mask(mask, grad_output.shape, "(the shape of grad_output)")
    return np.asarray(grad_output * mask.astype(grad_output.dtype) * _scale(p, grad_output.dtype))


def _check_nchw(x, name: str) -> np.ndarray:
    x = _checks.float_array(x, name)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D NCHW array (batch, channels, height, width); got shape {x.shape}"
        )
    return x


def dropout2d(x, p, training=True, seed=None, rng=None):
    """Channel dropout: drop whole feature maps of an NCHW array.

    One keep/drop decision per (sample, channel), shared by every (h, w), as
    used after convolutions where neighbouring pixels are strongly correlated.

    Args:
        x: floating array of shape (N, C, H, W).
        p, training, seed, rng: as for `dropout`.

    Returns:
        (out, mask): out has x's shape and dtype; mask has shape (N, C, 1, 1)
        in x's dtype and broadcasts over H and W.
    """
    x = _check_nchw(x, "x")
    p = _checks.drop_probability(p)
    training = _checks.boolean(training, "training")
    mask_shape = (*x.shape[:2], 1, 1)
    if not training or p == 0.0:
        _checks.seed_or_rng(seed, rng)
        return x.copy(), np.ones(mask_shape, dtype=x.dtype)
    mask = _draw_keep(mask_shape, p, seed, rng).astype(x.dtype)
    return x * mask * _scale(p, x.dtype), mask


def dropout2d_backward(grad_output, mask, p):
    """Gradient of dropout2d with respect to its input.

    Args:
        grad_output: floating array of shape (N, C, H, W).
        mask: the (N, C, 1, 1) channel mask returned by `dropout2d`.
        p: the drop probability the forward used.

    Returns:
        grad_input of shape (N, C, H, W): grad_output * mask / (1 - p), the
        channel decision broadcast over every pixel of that channel.
    """
    grad_output = _check_nchw(grad_output, "grad_output")
    p = _checks.drop_probability(p)
    expected = (*grad_output.shape[:2], 1, 1)
    mask = _check_mask(mask, expected, "(N, C, 1, 1) for grad_output of shape " + str(grad_output.shape))
    return grad_output * mask.astype(grad_output.dtype) * _scale(p, grad_output.dtype)
