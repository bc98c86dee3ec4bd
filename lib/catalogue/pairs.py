"""Building blocks of the labelled pairs in `lib.catalogue.mutants`: factories of Problems.

A factory is factory(dtype: np.dtype, seed: int) -> Problem. Randomness is explicit: it draws x,
grad_output and mask seeds from `np.random.default_rng(seed)`; the stochastic forwards carry
their own Generators (or the replica's emulated global RNG), never numpy's global state.
"""

from __future__ import annotations

import zlib

import numpy as np

from lib.catalogue.problem import Problem
from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.replica import GlobalRNG, original_dropout

#: Drop probability of every dropout entry (the original test's).
P = 0.3


def keep_scale(dtype: np.dtype):
    return dtype.type(1.0 / (1.0 - P))


def _mask_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 2**31))


def _uniform(rng: np.random.Generator, shape, dtype: np.dtype, low=-2.0, high=2.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def _normal(rng: np.random.Generator, shape, dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _seeded_input(rng: np.random.Generator, shape, dtype: np.dtype):
    """(x, s, mask): a uniform input, a dropout seed and the mask of the test's own forward call."""
    x = _uniform(rng, shape, dtype)
    s = _mask_seed(rng)
    return x, s, dropout(x, P, seed=s)[1]


def seeded_dropout(make_backward, *, shape=(6, 8), ones=True):
    """A deterministic dropout forward (same seed every call) and a backward made from its mask.

    make_backward(mask, seed, x, dtype) -> backward(grad_output, x).
    """
    def factory(dtype: np.dtype, seed: int) -> Problem:
        rng = np.random.default_rng(seed)
        x, s, mask = _seeded_input(rng, shape, dtype)

        def forward(x_in):
            return dropout(x_in, P, seed=s)[0]

        g = np.ones_like(x) if ones else _normal(rng, shape, dtype)
        return Problem(forward, make_backward(mask, s, x, dtype), x, g)
    return factory


def elementwise(fn, dfn, *, shape=(5, 8), low=-2.0, high=2.0):
    """forward = fn(x) and backward = grad_output * dfn(x, fn(x)), random grad_output."""
    def factory(dtype: np.dtype, seed: int) -> Problem:
        rng = np.random.default_rng(seed)
        x = _uniform(rng, shape, dtype, low, high)

        def forward(x_in):
            return fn(x_in)

        def backward(g, x_in):
            return g * dfn(x_in, fn(x_in))

        return Problem(forward, backward, x, _normal(rng, shape, dtype))
    return factory


def _conditioned_grad(rng, shape, dtype, reference_backward, x, floor: float, *,
                      required: bool = True) -> np.ndarray | None:
    """A random grad_output whose true gradient has no element below `floor` times its largest.

    Functions that mix elements (softmax, layer norm, matmul) put float32
    rounding noise of about 1e-5 on every gradient element, so an element near
    zero fails the check's atol=1e-6 whatever the backward: with plain random
    grad_outputs about a third of correct float32 checks fail. A correct pair
    must pass at the default settings, so draw until the gradient is bounded
    away from zero (deterministic for a given rng). Some x allow no such
    grad_output at all; then None, or RuntimeError when `required`.
    """
    for _ in range(1000):
        g = _normal(rng, shape, dtype)
        a = np.abs(np.asarray(reference_backward(g, x), dtype=np.float64))
        if a.min() >= floor * a.max():
            return g
    if required:
        raise RuntimeError(f"no grad_output with gradient floor {floor} in 1000 draws")
    return None


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    z = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


def softmax_backward(g, y):
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def softmax_pair(backward_rule):
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        x = _uniform(rng, (4, 6), dtype, -1.0, 1.0)

        def backward(g, x_in):
            return backward_rule(g, _softmax(x_in))

        def reference(g, x_in):
            return softmax_backward(g, _softmax(x_in))

        return Problem(_softmax, backward, x, _conditioned_grad(rng, (4, 6), dtype, reference, x, 0.02))
    return factory


def log_sum_exp(dtype, seed):
    rng = np.random.default_rng(seed)
    # Inputs within +-0.5 keep every softmax weight near 1/6: a weight near 0
    # would make its gradient element vanish below float32's rounding noise.
    x = _uniform(rng, (4, 6), dtype, -0.5, 0.5)

    def forward(x_in):
        top = np.max(x_in, axis=-1, keepdims=True)
        return (top + np.log(np.sum(np.exp(x_in - top), axis=-1, keepdims=True)))[..., 0]

    def backward(g, x_in):
        return g[..., None] * _softmax(x_in)

    return Problem(forward, backward, x, _conditioned_grad(rng, (4,), dtype, backward, x, 0.02))


_LN_EPS = 1e-5


def layer_norm_pair(full_backward: bool):
    """Layer norm over the last axis with random gamma and beta."""
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        # A row of 4 has two constraints on its gradient (it sums to 0 and is orthogonal to
        # xhat), so for some x every grad_output leaves an element near 0: draw x again then.
        for _ in range(100):
            forward, reference, forgetful, x = _layer_norm(rng, dtype)
            g = _conditioned_grad(rng, (3, 4), dtype, reference, x, 0.05, required=False)
            if g is not None:
                return Problem(forward, reference if full_backward else forgetful, x, g)
        raise RuntimeError("no layer-norm input with a conditioned grad_output in 100 draws")
    return factory


def _layer_norm(rng, dtype):
    """(forward, reference backward, forgetful backward, x) of a layer norm drawn from rng."""
    x = _normal(rng, (3, 4), dtype)
    gamma = (1.0 + 0.5 * rng.standard_normal(4)).astype(dtype)
    beta = _normal(rng, (4,), dtype)

    def normalise(x_in):
        mu = np.mean(x_in, axis=-1, keepdims=True)
        sigma = np.sqrt(np.var(x_in, axis=-1, keepdims=True) + x_in.dtype.type(_LN_EPS))
        return (x_in - mu) / sigma, sigma

    def forward(x_in):
        return gamma * normalise(x_in)[0] + beta

    def reference(g, x_in):
        xhat, sigma = normalise(x_in)
        dxhat = g * gamma
        return (dxhat - np.mean(dxhat, axis=-1, keepdims=True)
                - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True)) / sigma

    def forgetful(g, x_in):  # forgets that mu and sigma depend on x too
        return g * gamma / normalise(x_in)[1]

    return forward, reference, forgetful, x


def matmul_pair(transpose: bool):
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        x = _normal(rng, (4, 5), dtype)
        w = _normal(rng, (5, 5), dtype)

        def forward(x_in):
            return x_in @ w

        def backward(g, x_in):
            return g @ (w.T if transpose else w)

        def reference(g, x_in):
            return g @ w.T

        return Problem(forward, backward, x, _conditioned_grad(rng, (4, 5), dtype, reference, x, 0.02))
    return factory


def dropout2d_pair(element_mask: bool):
    shape = (2, 3, 4, 4)

    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        x = _uniform(rng, shape, dtype)
        s = _mask_seed(rng)
        _, channel_mask = dropout2d(x, P, seed=s)

        def forward(x_in):
            return dropout2d(x_in, P, seed=s)[0]

        if element_mask:
            # The same seed, but a mask of x's full shape: one decision per element.
            _, mask = dropout(x, P, seed=s)

            def backward(g, x_in):
                return dropout_backward(g, mask, P)
        else:
            def backward(g, x_in):
                return dropout2d_backward(g, channel_mask, P)

        return Problem(forward, backward, x, _normal(rng, shape, dtype))
    return factory


def stochastic_dropout(make_draw):
    """A forward whose mask comes from make_draw(seed) -> draw(x) -> (out, mask), called anew
    for the test's own call and for every forward call; backward uses the test's mask."""
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        x = _uniform(rng, (6, 8), dtype)
        draw = make_draw(_mask_seed(rng))
        _, mask = draw(x)

        def forward(x_in):
            return draw(x_in)[0]

        def backward(g, x_in):
            return dropout_backward(g, mask, P)

        return Problem(forward, backward, x, np.ones_like(x))
    return factory


def fresh_generator(s):
    generator = np.random.default_rng(s)  # created once; advances on every draw
    return lambda x_in: dropout(x_in, P, rng=generator)


def global_rng_seeded_once(s):
    state = GlobalRNG()
    state.seed(s)  # seeded once at the start of the test, never again
    return lambda x_in: original_dropout(x_in, P, s, state, reseed=False)


def seed_zero(s):
    state = GlobalRNG()
    # seed=0 means "do not seed" in the original API: every call draws on.
    return lambda x_in: original_dropout(x_in, P, 0, state, reseed=True)


def step_counter(s):
    step = [0]

    def draw(x_in):
        step[0] += 1  # a layer that advances its step (and seed) on every forward
        return dropout(x_in, P, seed=s + step[0])
    return draw


def input_seeded(s):
    def draw(x_in):
        # A per-input seed (say, a cache key): the same x gives the same mask,
        # but x+eps and x-eps are different inputs and get different masks.
        return dropout(x_in, P, seed=(s + zlib.crc32(np.ascontiguousarray(x_in).tobytes())) % 2**32)
    return draw


def running_statistic(dtype, seed):
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (6, 8), dtype)
    running = [np.zeros(8)]

    def forward(x_in):
        # Training-mode normalisation that updates its running mean on every
        # call and subtracts the updated value: the output drifts call by call.
        running[0] = 0.9 * running[0] + 0.1 * np.mean(x_in, axis=0)
        return x_in - running[0].astype(x_in.dtype)

    def backward(g, x_in):
        return g - 0.1 * np.mean(g, axis=0, keepdims=True)

    return Problem(forward, backward, x, _normal(rng, (6, 8), dtype))


def rebound_mask(dtype, seed):
    x, s, mask = _seeded_input(np.random.default_rng(seed), (6, 8), dtype)

    def forward(x_in):
        return dropout(x_in, P, seed=s)[0]

    def backward(g, x_in):
        return dropout_backward(g, mask, P)  # looks `mask` up when called, not when defined

    # A later statement of the test (a second layer) rebinds the name the
    # backward reads: Python closures bind late.
    _, mask = dropout(x, P, seed=s + 1)
    return Problem(forward, backward, x, np.ones_like(x))


def backward_draws_mask(mask, s, x, dtype):
    generator = np.random.default_rng(s + 1)

    def backward(g, x_in):
        # Draws its own mask on every call instead of receiving the forward's.
        return dropout_backward(g, dropout(x_in, P, rng=generator)[1], P)
    return backward


def inplace_dropout(dtype, seed):
    x, _, mask = _seeded_input(np.random.default_rng(seed), (6, 8), dtype)

    def forward(x_in):
        np.multiply(x_in, mask * keep_scale(x_in.dtype), out=x_in)  # "saves memory"
        return x_in

    def backward(g, x_in):
        return dropout_backward(g, mask, P)

    return Problem(forward, backward, x, np.ones_like(x))


def inplace_clip(dtype, seed):
    rng = np.random.default_rng(seed)
    # |x| kept well away from the kinks at +-1, so that only the mutation is wrong.
    magnitude = np.where(rng.random((5, 8)) < 0.5, rng.uniform(0.1, 0.8, (5, 8)), rng.uniform(1.2, 2.0, (5, 8)))
    x = (magnitude * rng.choice([-1.0, 1.0], (5, 8))).astype(dtype)

    def forward(x_in):
        return np.clip(x_in, -1, 1, out=x_in)  # hardtanh, in place

    def backward(g, x_in):
        return g * (np.abs(x_in) < 1)

    return Problem(forward, backward, x, _normal(rng, (5, 8), dtype))


def backward_into_grad_output(dtype, seed):
    def make_backward(mask, s, x, dtype):
        def backward(g, x_in):
            g *= mask * keep_scale(g.dtype)  # scales the caller's upstream gradient in place
            return g
        return backward
    return seeded_dropout(make_backward, ones=False)(dtype, seed)


def backward_scratch_x(dtype, seed):
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (5, 8), dtype)

    def backward(g, x_in):
        y = np.tanh(x_in, out=x_in)  # reuses x's buffer for tanh(x)
        return g * (1 - y * y)

    return Problem(np.tanh, backward, x, _normal(rng, (5, 8), dtype))


def dropout_original_values(dtype, seed):
    """Dropout on 16 values in [-2, 2] with all-ones grad_output, as in the original test."""
    x, s, mask = _seeded_input(np.random.default_rng(seed), (16,), dtype)
    return Problem(lambda x_in: dropout(x_in, P, seed=s)[0],
                   lambda g, x_in: dropout_backward(g, mask, P), x, np.ones_like(x))


def correct_dropout(shape, ones):
    return seeded_dropout(lambda mask, s, x, dtype: lambda g, x_in: dropout_backward(g, mask, P),
                          shape=shape, ones=ones)


def mask_rule(rule):
    """make_backward from rule(g, mask, s, x) -> grad_x."""
    return lambda mask, s, x, dtype: lambda g, x_in: rule(g, mask, s, x)
