"""Layers of the kind people check, each correct and with a bug people really write.

A gradient checker earns trust on two counts: it passes correct backwards in
float32 as well as float64 (no false alarms), and it fails wrong ones (no
misses). This catalogue is the measuring stick for both: ordinary numpy layers
(affine, batch norm, layer norm, softmax with cross-entropy, conv2d, max-pool,
an LSTM cell, GELU, tanh, dropout with a fixed mask), each with its correct
backward and with broken backwards of the kinds found in course assignments
and issue trackers: a dropped term, a wrong axis, a missing factor, a
transposed weight, an upstream gradient ignored, squared or overwritten.

    case = build("batch-norm", "float32", seed=3)
    check_gradient(case.forward, case.backward, case.x, case.grad_output)

Every layer computes in x's dtype; its parameters are drawn in float64 from
`np.random.default_rng(seed)` and stored in that dtype. `grad_output` is all
ones (the common case, where the subtle misses hide) when `ones=True`, else
random.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate

LAYERS: dict[str, Callable] = {}


@dataclass(frozen=True)
class Case:
    """One forward/backward pair on one input.

    Attributes:
        layer: the layer's name, e.g. "batch-norm".
        bug: "" for the correct backward, else the bug's name.
        forward: forward(x) -> y, computed in x's dtype.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x, grad_output: arrays in the case's dtype.
    """

    layer: str
    bug: str
    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: np.ndarray

    @property
    def correct(self) -> bool:
        return not self.bug


def _layer(name: str):
    def register(factory):
        LAYERS[name] = factory
        return factory
    return register


def _draw(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# --- the layers: factory(rng, dtype) -> (forward, {bug: backward}, x) -------------------------------

@_layer("affine")
def _affine(rng, dtype):
    x, w, b = _draw(rng, (4, 6), dtype), _draw(rng, (6, 6), dtype, 0.5), _draw(rng, (6,), dtype)
    return (lambda z: z @ w + b, {"": lambda g, z: g @ w.T, "untransposed-weight": lambda g, z: g @ w}, x)


def _bn_forward(z, gamma, beta, axis, eps=1e-5):
    mean = z.mean(axis=axis, keepdims=True)
    var = z.var(axis=axis, keepdims=True)
    return (z - mean) / np.sqrt(var + z.dtype.type(eps)) * gamma + beta


def _bn_backward(g, z, gamma, axis, eps=1e-5, drop_mean_term=False):
    n = z.shape[axis]
    mean = z.mean(axis=axis, keepdims=True)
    inv = 1 / np.sqrt(z.var(axis=axis, keepdims=True) + z.dtype.type(eps))
    xhat = (z - mean) * inv
    dxhat = g * gamma
    mean_term = 0 if drop_mean_term else dxhat.sum(axis=axis, keepdims=True)
    return inv / n * (n * dxhat - mean_term - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True))


@_layer("batch-norm")
def _batch_norm(rng, dtype):
    x = _draw(rng, (8, 5), dtype, 2.0) + dtype.type(1.0)
    gamma, beta = _draw(rng, (5,), dtype), _draw(rng, (5,), dtype)
    return (lambda z: _bn_forward(z, gamma, beta, 0),
            {"": lambda g, z: _bn_backward(g, z, gamma, 0),
             "dropped-mean-term": lambda g, z: _bn_backward(g, z, gamma, 0, drop_mean_term=True)}, x)


@_layer("layer-norm")
def _layer_norm(rng, dtype):
    x = _draw(rng, (4, 7), dtype, 1.5)
    gamma, beta = _draw(rng, (7,), dtype), _draw(rng, (7,), dtype)
    return (lambda z: _bn_forward(z, gamma, beta, 1),
            {"": lambda g, z: _bn_backward(g, z, gamma, 1),
             "dropped-mean-term": lambda g, z: _bn_backward(g, z, gamma, 1, drop_mean_term=True)}, x)


def _softmax(z):
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@_layer("softmax-cross-entropy")
def _softmax_cross_entropy(rng, dtype):
    x = _draw(rng, (5, 6), dtype, 2.0)
    labels = rng.integers(0, 6, 5)
    onehot = np.eye(6, dtype=dtype)[labels]

    def forward(z):  # mean cross-entropy, a (1,)-shaped loss
        return np.atleast_1d(-np.mean(np.log(_softmax(z)[np.arange(5), labels])))

    return (forward,
            {"": lambda g, z: g[0] * (_softmax(z) - onehot) / z.dtype.type(5),
             "not-divided-by-batch": lambda g, z: g[0] * (_softmax(z) - onehot)}, x)


def _conv(z, k):  # valid cross-correlation of (N, H, W) with (kh, kw)
    kh, kw = k.shape
    out_h, out_w = z.shape[1] - kh + 1, z.shape[2] - kw + 1
    out = np.zeros((z.shape[0], out_h, out_w), dtype=z.dtype)
    for a in range(kh):
        for b in range(kw):
            out += k[a, b] * z[:, a:a + out_h, b:b + out_w]
    return out


def _conv_backward(g, z, k, flip=False):
    kh, kw = k.shape
    k = k[::-1, ::-1] if flip else k
    grad = np.zeros_like(z)
    for a in range(kh):
        for b in range(kw):
            grad[:, a:a + g.shape[1], b:b + g.shape[2]] += k[a, b] * g
    return grad


@_layer("conv2d")
def _conv2d(rng, dtype):
    x, k = _draw(rng, (2, 6, 6), dtype), _draw(rng, (3, 3), dtype, 0.5)
    return (lambda z: _conv(z, k),
            {"": lambda g, z: _conv_backward(g, z, k),
             "flipped-kernel": lambda g, z: _conv_backward(g, z, k, flip=True)}, x)


def _pool_argmax(z):
    blocks = z.reshape(z.shape[0], z.shape[1] // 2, 2, z.shape[2] // 2, 2).transpose(0, 1, 3, 2, 4)
    return blocks.reshape(*blocks.shape[:3], 4)


@_layer("max-pool")
def _max_pool(rng, dtype):
    # distinct values at least 0.1 apart, so that no perturbation changes an argmax
    x = (rng.permutation(2 * 6 * 6).reshape(2, 6, 6) * 0.1 - 3.0).astype(dtype)

    def backward(g, z, first=False):
        blocks = _pool_argmax(z)
        pick = np.zeros_like(blocks)
        index = np.zeros(blocks.shape[:3], dtype=int) if first else blocks.argmax(axis=3)
        np.put_along_axis(pick, index[..., None], g[..., None], axis=3)
        return pick.reshape(z.shape[0], 3, 3, 2, 2).transpose(0, 1, 3, 2, 4).reshape(z.shape)

    return (lambda z: _pool_argmax(z).max(axis=3),
            {"": backward, "routes-to-first-element": lambda g, z: backward(g, z, first=True)}, x)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@_layer("lstm-cell")
def _lstm_cell(rng, dtype):
    x = _draw(rng, (3, 4), dtype)
    w = _draw(rng, (4, 4 * 5), dtype, 0.4)
    c_prev = _draw(rng, (3, 5), dtype)

    def gates(z):
        a = z @ w
        return _sigmoid(a[:, :5]), _sigmoid(a[:, 5:10]), np.tanh(a[:, 10:15]), _sigmoid(a[:, 15:])

    def forward(z):
        i, f, u, o = gates(z)
        return o * np.tanh(f * c_prev + i * u)

    def backward(g, z, wrong_tanh=False):
        i, f, u, o = gates(z)
        c = np.tanh(f * c_prev + i * u)
        dc = g * o * (1 - c if wrong_tanh else 1 - c * c)
        da = np.concatenate([dc * u * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - u * u),
                             g * c * o * (1 - o)], axis=1)
        return da @ w.T

    return forward, {"": backward, "tanh-derivative-1-minus-t": lambda g, z: backward(g, z, True)}, x


def _gelu(z):
    c = z.dtype.type(np.sqrt(2 / np.pi))
    return z.dtype.type(0.5) * z * (1 + np.tanh(c * (z + z.dtype.type(0.044715) * z**3)))


def _gelu_backward(g, z, drop_cubic=False):
    c = np.sqrt(2 / np.pi)
    inner = c * (z + 0.044715 * z**3)
    t = np.tanh(inner)
    d_inner = c * (1 + (0 if drop_cubic else 3 * 0.044715) * z**2)
    return (g * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * d_inner)).astype(z.dtype)


@_layer("gelu")
def _gelu_layer(rng, dtype):
    x = _draw(rng, (4, 6), dtype, 2.0)
    return (_gelu, {"": _gelu_backward, "dropped-cubic-term": lambda g, z: _gelu_backward(g, z, True)}, x)


@_layer("tanh")
def _tanh_layer(rng, dtype):
    x = _draw(rng, (4, 6), dtype)
    return (np.tanh, {"": lambda g, z: g * (1 - np.tanh(z) ** 2),
                      "derivative-of-sigmoid": lambda g, z: g * _sigmoid(z) * (1 - _sigmoid(z))}, x)


@_layer("dropout")
def _fixed_dropout(rng, dtype):
    x = _draw(rng, (4, 6), dtype)
    mask = (rng.random((4, 6)) > 0.3).astype(dtype)
    scale = dtype.type(1 / 0.7)
    return (lambda z: z * mask * scale,
            {"": lambda g, z: g * mask * scale, "missing-scale": lambda g, z: g * mask}, x)


# --- bugs every layer can have: the upstream gradient mishandled --------------------------------------

def _ignores_upstream(backward):
    return lambda g, z: backward(np.ones_like(g), z)


def _squares_upstream(backward):
    return lambda g, z: backward(g * g, z)


def _overwrites_upstream(backward):
    def wrong(g, z):
        result = backward(g, z)
        g *= 0  # reuses the caller's buffer as scratch space
        return result
    return wrong


UPSTREAM_BUGS = {"ignores-grad-output": _ignores_upstream, "squares-grad-output": _squares_upstream,
                 "overwrites-grad-output": _overwrites_upstream}


def bugs(layer: str) -> list[str]:
    """The bug names `build` accepts for `layer` (its own, then the upstream ones); "" is correct."""
    own = LAYERS[layer](np.random.default_rng(0), np.dtype(np.float64))[1]
    return [*own, *UPSTREAM_BUGS]


def build(layer: str, dtype, seed: int, bug: str = "", *, ones: bool = True) -> Case:
    """A fresh Case of `layer` in `dtype` from `seed`, correct (bug="") or with `bug`."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}; got {layer!r}")
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    forward, backwards, x = LAYERS[layer](rng, dtype)
    y = np.asarray(forward(x))
    grad = np.ones_like(y) if ones else (rng.uniform(0.5, 2.0, y.shape) * rng.choice([-1, 1], y.shape)).astype(y.dtype)
    if bug in backwards:
        backward = backwards[bug]
    elif bug in UPSTREAM_BUGS:
        backward = UPSTREAM_BUGS[bug](backwards[""])
    else:
        raise ValueError(f"bug must be one of {', '.join(repr(b) for b in bugs(layer))}; got {bug!r}")
    return Case(layer, bug, forward, backward, x, grad)


def cases(dtypes=("float32", "float64"), seeds=range(10), *, ones=(True, False)):
    """Every layer x bug x dtype x seed x grad_output kind, as Cases (a generator)."""
    for layer in LAYERS:
        for bug in bugs(layer):
            for dtype in dtypes:
                for seed in seeds:
                    for one in ones:
                        yield build(layer, dtype, seed, bug, ones=one)


@dataclass(frozen=True)
class Tally:
    """How one checker did on one layer in one dtype.

    Attributes:
        layer, dtype: what was checked.
        correct, false_alarms: correct runs, and how many of them failed.
        broken, detected: runs with a bug, and how many of them failed.
    """

    layer: str
    dtype: str
    correct: int
    false_alarms: int
    broken: int
    detected: int


def tally(check: Callable[[Case], bool], dtypes=("float32", "float64"), seeds=range(10)) -> list[Tally]:
    """Run `check(case) -> passed` on every case; one Tally per layer and dtype."""
    counts: dict[tuple[str, str], list[int]] = {}
    for case in cases(dtypes, seeds):
        row = counts.setdefault((case.layer, str(case.x.dtype)), [0, 0, 0, 0])
        passed = check(case)
        if case.correct:
            row[0] += 1
            row[1] += not passed
        else:
            row[2] += 1
            row[3] += not passed
    return [Tally(layer, dtype, *row) for (layer, dtype), row in counts.items()]


def format_tallies(columns: dict[str, list[Tally]]) -> str:
    """One aligned table: per layer and dtype, false alarms and detections of each named checker."""
    names = list(columns)
    first = columns[names[0]]
    headers = ["layer", "dtype", "correct", *(f"alarms {n}" for n in names), "broken", *(f"found {n}" for n in names)]
    rows = [[row.layer, row.dtype, row.correct, *(columns[n][k].false_alarms for n in names), row.broken,
             *(columns[n][k].detected for n in names)] for k, row in enumerate(first)]
    rows.append(["all", "", sum(t.correct for t in first), *(sum(t.false_alarms for t in columns[n]) for n in names),
                 sum(t.broken for t in first), *(sum(t.detected for t in columns[n]) for n in names)])
    return tabulate(rows, headers=headers, tablefmt="simple")
