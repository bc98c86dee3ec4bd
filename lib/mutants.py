"""A catalogue of forward/backward pairs, deliberately wrong and correct, each labelled.

Every entry knows the diagnosis code it must produce (`lib.diagnose.CODES`),
names its mechanism in one line, and builds a fresh problem on demand:

    entry = by_name("missing-scale")
    forward, backward, x, grad_output = entry.build("float32", seed=0)
    entry.diagnose("float32", seed=0).primary.code      # -> "wrong-backward"

`entry.check` holds the check settings the entry is labelled under (most are
the defaults; the precision entries need a particular step, divide or
tolerance, e.g. eps=1e-5 with the nominal divide of the original checker), and
`entry.dtypes` the dtypes for which the label holds: a too-small step is a
float32 problem, and the same setting in float64 is simply fine.

The wrong pairs are the mechanisms the investigation considered and their
relatives; the correct pairs (dropout, dropout2d, tanh, sigmoid, softmax,
log-sum-exp, layer norm, matmul) must come out `ok` in float32 and float64.
Randomness is explicit: a factory draws x, grad_output and mask seeds from
`np.random.default_rng(seed)`; the stochastic forwards carry their own
Generators (or the replica's emulated global RNG), never numpy's global state.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lib import _checks
from lib.diagnose import CODES, Diagnosis, diagnose
from lib.dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from lib.replica import GlobalRNG, original_dropout

#: Drop probability of every dropout entry (the original test's).
P = 0.3


class Problem(NamedTuple):
    """What a check needs: forward(x) -> y, backward(grad_output, x) -> grad_x, x, grad_output."""

    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: np.ndarray


@dataclass(frozen=True)
class Entry:
    """One labelled forward/backward pair.

    Attributes:
        name: short unique name, e.g. "inverted-mask".
        code: the diagnosis code the pair must produce as findings[0].
        description: the mechanism, in one line.
        factory: factory(dtype: np.dtype, seed: int) -> Problem, a fresh problem.
        check: keyword settings for diagnose (eps, divide_by, rtol, atol); all but divide_by
            also apply to check_gradient.
        dtypes: dtypes in which the label holds.
    """

    name: str
    code: str
    description: str
    factory: Callable[[np.dtype, int], Problem]
    check: dict = field(default_factory=dict)
    dtypes: tuple[str, ...] = ("float32", "float64")

    def build(self, dtype="float32", seed: int = 0) -> Problem:
        """A fresh Problem in `dtype` (float16/32/64); `seed` fixes x, grad_output and masks."""
        dtype = _checks.dtype_from_name(dtype)
        seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
        return self.factory(dtype, seed)

    def diagnose(self, dtype=None, seed: int = 0, probe_seed: int = 0) -> Diagnosis:
        """diagnose() on a fresh problem under this entry's check settings (dtype: first of `dtypes`)."""
        problem = self.build(self.dtypes[0] if dtype is None else dtype, seed)
        return diagnose(*problem, seed=probe_seed, **self.check)


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


def _scale(dtype: np.dtype):
    return dtype.type(1.0 / (1.0 - P))


def _mask_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 2**31))


def _uniform(rng: np.random.Generator, shape, dtype: np.dtype, low=-2.0, high=2.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def _normal(rng: np.random.Generator, shape, dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _seeded_dropout(make_backward, *, shape=(6, 8), ones=True):
    """A deterministic dropout forward (same seed every call) and a backward made from its mask.

    make_backward(mask, seed, x, dtype) -> backward(grad_output, x).
    """
    def factory(dtype: np.dtype, seed: int) -> Problem:
        rng = np.random.default_rng(seed)
        x = _uniform(rng, shape, dtype)
        s = _mask_seed(rng)
        _, mask = dropout(x, P, seed=s)  # the test's own forward call

        def forward(x_in):
            return dropout(x_in, P, seed=s)[0]

        g = np.ones_like(x) if ones else _normal(rng, shape, dtype)
        return Problem(forward, make_backward(mask, s, x, dtype), x, g)
    return factory


def _elementwise(fn, dfn, *, shape=(5, 8), low=-2.0, high=2.0):
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


def _conditioned_grad(rng, shape, dtype, reference_backward, x, floor: float) -> np.ndarray:
    """A random grad_output whose true gradient has no element below `floor` times its largest.

    Functions that mix elements (softmax, layer norm, matmul) put float32
    rounding noise of about 1e-5 on every gradient element, so an element near
    zero fails the check's atol=1e-6 whatever the backward: with plain random
    grad_outputs about a third of correct float32 checks fail. A correct pair
    must pass at the default settings, so draw until the gradient is bounded
    away from zero (deterministic for a given rng).
    """
    for _ in range(1000):
        g = _normal(rng, shape, dtype)
        a = np.abs(np.asarray(reference_backward(g, x), dtype=np.float64))
        if a.min() >= floor * a.max():
            return g
    raise RuntimeError(f"no grad_output with gradient floor {floor} in 1000 draws")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    z = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


def _softmax_backward(g, y):
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def _softmax_pair(backward_rule):
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
        x = _uniform(rng, (4, 6), dtype, -1.0, 1.0)

        def backward(g, x_in):
            return backward_rule(g, _softmax(x_in))

        def reference(g, x_in):
            return _softmax_backward(g, _softmax(x_in))

        return Problem(_softmax, backward, x, _conditioned_grad(rng, (4, 6), dtype, reference, x, 0.02))
    return factory


def _log_sum_exp(dtype, seed):
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


def _layer_norm_pair(full_backward: bool):
    """Layer norm over the last axis with random gamma and beta."""
    def factory(dtype, seed):
        rng = np.random.default_rng(seed)
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

        g = _conditioned_grad(rng, (3, 4), dtype, reference, x, 0.05)
        return Problem(forward, reference if full_backward else forgetful, x, g)
    return factory


def _matmul_pair(transpose: bool):
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


def _dropout2d_pair(element_mask: bool):
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


def _stochastic_dropout(make_draw):
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


def _fresh_generator(s):
    generator = np.random.default_rng(s)  # created once; advances on every draw
    return lambda x_in: dropout(x_in, P, rng=generator)


def _global_rng_seeded_once(s):
    state = GlobalRNG()
    state.seed(s)  # seeded once at the start of the test, never again
    return lambda x_in: original_dropout(x_in, P, s, state, reseed=False)


def _seed_zero(s):
    state = GlobalRNG()
    # seed=0 means "do not seed" in the original API: every call draws on.
    return lambda x_in: original_dropout(x_in, P, 0, state, reseed=True)


def _step_counter(s):
    step = [0]

    def draw(x_in):
        step[0] += 1  # a layer that advances its step (and seed) on every forward
        return dropout(x_in, P, seed=s + step[0])
    return draw


def _input_seeded(s):
    def draw(x_in):
        # A per-input seed (say, a cache key): the same x gives the same mask,
        # but x+eps and x-eps are different inputs and get different masks.
        return dropout(x_in, P, seed=(s + zlib.crc32(np.ascontiguousarray(x_in).tobytes())) % 2**32)
    return draw


def _running_statistic(dtype, seed):
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


def _rebound_mask(dtype, seed):
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (6, 8), dtype)
    s = _mask_seed(rng)
    _, mask = dropout(x, P, seed=s)

    def forward(x_in):
        return dropout(x_in, P, seed=s)[0]

    def backward(g, x_in):
        return dropout_backward(g, mask, P)  # looks `mask` up when called, not when defined

    # A later statement of the test (a second layer) rebinds the name the
    # backward reads: Python closures bind late.
    _, mask = dropout(x, P, seed=s + 1)
    return Problem(forward, backward, x, np.ones_like(x))


def _backward_draws_mask(mask, s, x, dtype):
    generator = np.random.default_rng(s + 1)

    def backward(g, x_in):
        # Draws its own mask on every call instead of receiving the forward's.
        return dropout_backward(g, dropout(x_in, P, rng=generator)[1], P)
    return backward


def _inplace_dropout(dtype, seed):
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (6, 8), dtype)
    s = _mask_seed(rng)
    _, mask = dropout(x, P, seed=s)

    def forward(x_in):
        np.multiply(x_in, mask * _scale(x_in.dtype), out=x_in)  # "saves memory"
        return x_in

    def backward(g, x_in):
        return dropout_backward(g, mask, P)

    return Problem(forward, backward, x, np.ones_like(x))


def _inplace_clip(dtype, seed):
    rng = np.random.default_rng(seed)
    # |x| kept well away from the kinks at +-1, so that only the mutation is wrong.
    magnitude = np.where(rng.random((5, 8)) < 0.5, rng.uniform(0.1, 0.8, (5, 8)), rng.uniform(1.2, 2.0, (5, 8)))
    x = (magnitude * rng.choice([-1.0, 1.0], (5, 8))).astype(dtype)

    def forward(x_in):
        return np.clip(x_in, -1, 1, out=x_in)  # hardtanh, in place

    def backward(g, x_in):
        return g * (np.abs(x_in) < 1)

    return Problem(forward, backward, x, _normal(rng, (5, 8), dtype))


def _backward_into_grad_output(dtype, seed):
    def make_backward(mask, s, x, dtype):
        def backward(g, x_in):
            g *= mask * _scale(g.dtype)  # scales the caller's upstream gradient in place
            return g
        return backward
    return _seeded_dropout(make_backward, ones=False)(dtype, seed)


def _backward_scratch_x(dtype, seed):
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (5, 8), dtype)

    def backward(g, x_in):
        y = np.tanh(x_in, out=x_in)  # reuses x's buffer for tanh(x)
        return g * (1 - y * y)

    return Problem(np.tanh, backward, x, _normal(rng, (5, 8), dtype))


def _dropout_original_values(dtype, seed):
    """Dropout on 16 values in [-2, 2] with all-ones grad_output, as in the original test."""
    rng = np.random.default_rng(seed)
    x = _uniform(rng, (16,), dtype)
    s = _mask_seed(rng)
    _, mask = dropout(x, P, seed=s)
    return Problem(lambda x_in: dropout(x_in, P, seed=s)[0],
                   lambda g, x_in: dropout_backward(g, mask, P), x, np.ones_like(x))


def _correct_dropout(shape, ones):
    return _seeded_dropout(lambda mask, s, x, dtype: lambda g, x_in: dropout_backward(g, mask, P),
                           shape=shape, ones=ones)


def _mb(rule):
    """make_backward from rule(g, mask, s, x) -> grad_x."""
    return lambda mask, s, x, dtype: lambda g, x_in: rule(g, mask, s, x)


# --------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------

MUTANTS: tuple[Entry, ...] = (
    # nondeterministic-forward: the forward is not a function of x alone.
    Entry("seedless-forward", "nondeterministic-forward",
          "forward draws a fresh mask on every call from a Generator that advances (seed=None behaviour)",
          _stochastic_dropout(_fresh_generator)),
    Entry("global-rng-forward", "nondeterministic-forward",
          "the shared global RNG is seeded once at the start; every forward call draws on from it",
          _stochastic_dropout(_global_rng_seeded_once)),
    Entry("seed-zero-forward", "nondeterministic-forward",
          "seed=0 means 'do not seed' in the original API, so every call draws a new mask",
          _stochastic_dropout(_seed_zero)),
    Entry("step-counter-forward", "nondeterministic-forward",
          "the layer advances a step counter on every forward call and seeds the mask with it",
          _stochastic_dropout(_step_counter)),
    Entry("input-seeded-forward", "nondeterministic-forward",
          "the mask is seeded from a checksum of x: same x, same mask, but x+eps and x-eps get different masks",
          _stochastic_dropout(_input_seeded)),
    Entry("running-statistic-forward", "nondeterministic-forward",
          "training-mode normalisation updates its running mean on every call (no RNG at all)",
          _running_statistic),
    # mask-mismatch: a correct dropout gradient under the wrong keep pattern.
    Entry("other-seed-mask", "mask-mismatch",
          "backward uses a mask drawn with another seed than the forward's",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g, dropout(x, P, seed=s + 1)[1], P)))),
    Entry("rebound-mask", "mask-mismatch",
          "the backward closure reads `mask` late; a later dropout call rebinds the name",
          _rebound_mask),
    Entry("inverted-mask", "mask-mismatch",
          "backward uses 1 - mask: keeps what the forward dropped",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g, 1 - mask, P)))),
    Entry("shifted-mask", "mask-mismatch",
          "backward uses the mask rolled by one element (an off-by-one in indexing)",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g, np.roll(mask, 1), P)))),
    Entry("transposed-mask", "mask-mismatch",
          "backward uses the transposed mask of a square input (a layout mix-up)",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g, mask.T, P)), shape=(7, 7))),
    Entry("backward-draws-mask", "mask-mismatch",
          "the backward draws a fresh mask on every call instead of using the forward's",
          _seeded_dropout(_backward_draws_mask)),
    Entry("element-mask-dropout2d", "mask-mismatch",
          "dropout2d forward drops channels; the backward applies an element mask from the same seed",
          _dropout2d_pair(element_mask=True)),
    # wrong-backward: not the forward's vector-Jacobian product.
    Entry("missing-scale", "wrong-backward",
          "backward multiplies by the mask but forgets the 1/(1-p) scale",
          _seeded_dropout(_mb(lambda g, mask, s, x: g * mask))),
    Entry("scale-by-1/p", "wrong-backward",
          "backward scales kept elements by 1/p instead of 1/(1-p)",
          _seeded_dropout(_mb(lambda g, mask, s, x: g * mask * g.dtype.type(1.0 / P)))),
    Entry("double-scale", "wrong-backward",
          "backward applies the 1/(1-p) factor twice",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g, mask, P) * _scale(g.dtype)))),
    Entry("sign-flip", "wrong-backward",
          "backward returns the negated gradient",
          _seeded_dropout(_mb(lambda g, mask, s, x: -dropout_backward(g, mask, P)), ones=False)),
    Entry("identity-backward", "wrong-backward",
          "backward returns grad_output unchanged (as in eval mode)",
          _seeded_dropout(_mb(lambda g, mask, s, x: g))),
    Entry("ignores-grad-output", "wrong-backward",
          "backward returns mask / (1-p) without multiplying by grad_output: passes an all-ones check",
          _seeded_dropout(_mb(lambda g, mask, s, x: mask * _scale(mask.dtype)))),
    Entry("squared-grad-output", "wrong-backward",
          "backward multiplies by grad_output twice: passes an all-ones check",
          _seeded_dropout(_mb(lambda g, mask, s, x: dropout_backward(g * g, mask, P)))),
    Entry("tanh-derivative-of-input", "wrong-backward",
          "tanh backward uses 1 - x^2 (derivative at the input) instead of 1 - tanh(x)^2",
          _elementwise(np.tanh, lambda x, y: 1 - x * x)),
    Entry("softmax-diagonal-only", "wrong-backward",
          "softmax backward uses only the Jacobian's diagonal y(1-y), forgetting the coupling terms",
          _softmax_pair(lambda g, y: g * y * (1 - y))),
    Entry("matmul-untransposed", "wrong-backward",
          "matmul backward multiplies by W instead of W.T",
          _matmul_pair(transpose=False)),
    Entry("layer-norm-no-mean-terms", "wrong-backward",
          "layer norm backward divides by sigma but forgets that mean and variance depend on x",
          _layer_norm_pair(full_backward=False)),
    # precision: the gradient is right; the finite difference is not accurate enough.
    Entry("nominal-step-float32", "precision",
          "the original setting: eps=1e-5 in float32 divided by the nominal 2*eps, not the stored step",
          _dropout_original_values, check={"eps": 1e-5, "divide_by": "nominal"}, dtypes=("float32",)),
    Entry("tiny-step-float32", "precision",
          "eps=1e-6 in float32: rounding noise of tanh(x) over so small a step swamps the difference",
          _elementwise(np.tanh, lambda x, y: 1 - y * y), check={"eps": 1e-6}, dtypes=("float32",)),
    Entry("step-below-spacing", "precision",
          "eps=1e-8 in float32 with the nominal divide: x+eps and x-eps round to x itself",
          _dropout_original_values, check={"eps": 1e-8, "divide_by": "nominal"}, dtypes=("float32",)),
    Entry("half-precision-sigmoid", "precision",
          "a correct sigmoid checked in float16 at rtol=1e-3: beyond float16's rounding budget",
          _elementwise(_sigmoid, lambda x, y: y * (1 - y)), dtypes=("float16",)),
    Entry("tolerance-below-budget", "precision",
          "a correct layer norm checked in float64 at rtol=1e-12, atol=0: tighter than any finite difference",
          _layer_norm_pair(full_backward=True), check={"rtol": 1e-12, "atol": 0.0}, dtypes=("float64",)),
    # input-mutation: forward or backward writes into its arguments.
    Entry("inplace-forward", "input-mutation",
          "dropout forward multiplies x in place (out=x) and returns it",
          _inplace_dropout),
    Entry("inplace-clip-forward", "input-mutation",
          "hardtanh forward clips x in place",
          _inplace_clip),
    Entry("backward-writes-grad-output", "input-mutation",
          "dropout backward scales grad_output in place and returns it",
          _backward_into_grad_output),
    Entry("backward-scratch-x", "input-mutation",
          "tanh backward reuses x's buffer to hold tanh(x)",
          _backward_scratch_x),
)

CORRECT: tuple[Entry, ...] = (
    Entry("dropout", "ok", "dropout with a fixed seed and the backward using its mask, all-ones grad_output",
          _correct_dropout((6, 8), ones=True)),
    Entry("dropout-random-grad", "ok", "dropout on a 1-D input with a random grad_output",
          _correct_dropout((40,), ones=False)),
    Entry("dropout2d", "ok", "channel dropout with its (N, C, 1, 1) mask",
          _dropout2d_pair(element_mask=False)),
    Entry("tanh", "ok", "tanh with backward 1 - tanh(x)^2",
          _elementwise(np.tanh, lambda x, y: 1 - y * y)),
    Entry("sigmoid", "ok", "sigmoid with backward s(1-s)",
          _elementwise(_sigmoid, lambda x, y: y * (1 - y))),
    Entry("softmax", "ok", "row softmax with backward y * (g - sum(g * y))",
          _softmax_pair(_softmax_backward)),
    Entry("log-sum-exp", "ok", "row log-sum-exp with backward g * softmax(x)", _log_sum_exp),
    Entry("layer-norm", "ok", "layer norm with gamma and beta, full backward",
          _layer_norm_pair(full_backward=True)),
    Entry("matmul", "ok", "x @ W with backward g @ W.T", _matmul_pair(transpose=True)),
)

CATALOGUE: tuple[Entry, ...] = MUTANTS + CORRECT


def by_name(name: str) -> Entry:
    """The catalogue entry called `name`."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(f"no catalogue entry {name!r}; known: {', '.join(e.name for e in CATALOGUE)}")


class Outcome(NamedTuple):
    """One diagnosed instance: entry name, dtype, seed, expected and diagnosed code, plain verdict."""

    name: str
    dtype: str
    seed: int
    expected: str
    diagnosed: str
    passed: bool


def evaluate(entries=CATALOGUE, seeds=(0,)) -> list[Outcome]:
    """Diagnose every entry in each of its dtypes for each seed."""
    return [
        Outcome(e.name, dtype, seed, e.code, (d := e.diagnose(dtype, seed)).primary.code, d.passed)
        for e in entries for dtype in e.dtypes for seed in seeds
    ]


def confusion(outcomes) -> np.ndarray:
    """counts[i, j]: instances labelled CODES[i] diagnosed as CODES[j] (rows true, columns diagnosed)."""
    counts = np.zeros((len(CODES), len(CODES)), dtype=int)
    for o in outcomes:
        counts[CODES.index(o.expected), CODES.index(o.diagnosed)] += 1
    return counts


#: Column labels for the confusion table, in the order of CODES.
SHORT_CODES = ("ok", "nondet", "mask", "wrong-bwd", "precision", "mutation")


def format_confusion(counts: np.ndarray) -> str:
    """The confusion matrix as an aligned text table: rows true code, columns diagnosed."""
    width = max(len(c) for c in CODES)
    head = "true / diagnosed".ljust(width) + "  " + " ".join(f"{c:>9}" for c in SHORT_CODES)
    rows = [f"{c:<{width}}  " + " ".join(f"{v:>9d}" for v in row) for c, row in zip(CODES, counts, strict=True)]
    return "\n".join([head, *rows])
