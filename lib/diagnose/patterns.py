"""Reading patterns in measured gradients: equal within a tolerance, two-level (mask-like) vectors,
the names of dropout's usual wrong factors, how two keep patterns relate."""

from __future__ import annotations

import numpy as np

from lib.diagnose.evidence import Pass

# How exactly two backward results must agree to count as "the same"
# (ignoring grad_output) or "linear" (backward(-2 g) == -2 backward(g)).
# Scaling by -2 is exact, so a linear backward meets this to the last bit.
EXACT = 1e-9


def two_level(v: np.ndarray, rel: float):
    """If v holds only 0 and one constant c (to within rel), return (support, c); else None."""
    if not np.all(np.isfinite(v)):
        return None
    scale = float(np.max(np.abs(v)))
    if scale == 0.0:
        return np.zeros(v.shape, dtype=bool), 0.0
    support = np.abs(v) > rel * scale
    c = float(np.median(v[support]))
    if np.all(np.abs(v[support] - c) <= rel * abs(c)):
        return support, c
    return None


def same(a: np.ndarray, b: np.ndarray, rel: float) -> np.ndarray:
    """Elementwise: a and b agree to `rel` relative, or to EXACT times the larger array's scale."""
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    return np.abs(a - b) <= rel * np.maximum(np.abs(a), np.abs(b)) + EXACT * scale


def pattern_tolerance(dtype: np.dtype) -> float:
    """How far apart two measured slopes may be and still count as equal."""
    # How far apart two slopes may be and still count as equal: float64
    # central differences at the default step are good to ~1e-10; other
    # dtypes are noisier by their rounding over the step.
    return 1e-6 if dtype == np.float64 else 1e-3


def dropout_factor_name(k: float, c_forward: float) -> str | None:
    """Name the ratio backward/forward scale for a dropout with scale c = 1/(1-p)."""
    if not c_forward > 1.0:
        return None
    p = 1.0 - 1.0 / c_forward
    candidates = (
        (1.0 - p, "1-p", "misses the 1/(1-p) factor (multiplies by the mask only)"),
        ((1.0 - p) / p, "(1-p)/p", "scales by 1/p instead of 1/(1-p)"),
        ((1.0 - p) ** 2, "(1-p)^2", "multiplies by (1-p) instead of dividing by it"),
        (p * (1.0 - p), "p(1-p)", "multiplies by p instead of dividing by (1-p)"),
        (c_forward, "1/(1-p)", "applies the 1/(1-p) factor twice"),
        (-1.0, "-1", "flips the sign"),
        (-(1.0 - p), "-(1-p)", "flips the sign and misses the 1/(1-p) factor"),
    )
    for value, symbol, meaning in candidates:
        if abs(k - value) <= 1e-3 * abs(value):
            return (f"that is {symbol} for p = {p:.3f} (read from the forward's scale 1/(1-p) = "
                    f"{c_forward:.5g}): the backward {meaning}")
    return None


def generic_factor_name(k: float) -> str:
    """A constant ratio backward / forward in words."""
    if abs(k + 1.0) <= 1e-3:
        return "the backward flips the sign"
    return f"the backward is off by the constant factor {k:.4g}"


def mask_relation(forward_keep: np.ndarray, backward_keep: np.ndarray, shape: tuple) -> str:
    """How the backward's keep pattern relates to the forward's: inverted, shifted, per channel, or unrelated."""
    f, b = forward_keep.reshape(shape), backward_keep.reshape(shape)
    if np.array_equal(b, ~f):
        return "the backward's pattern is the forward's inverted (keeps exactly what the forward drops)"
    for s in (1, -1, 2, -2, 3, -3):
        if np.array_equal(np.roll(f.reshape(-1), s), b.reshape(-1)):
            return f"the backward's pattern is the forward's shifted by {s:+d} position(s) in flat order"
        for axis in range(f.ndim) if f.ndim > 1 else ():
            if np.array_equal(np.roll(f, s, axis=axis), b):
                return f"the backward's pattern is the forward's shifted by {s:+d} along axis {axis}"
    if f.ndim == 2 and f.shape[0] == f.shape[1] and np.array_equal(f.T, b):
        return "the backward's pattern is the forward's transposed"
    if f.ndim == 4 and f.shape[2] * f.shape[3] > 1:
        f_channel = np.all(f == f[:, :, :1, :1], axis=(2, 3)).all()
        b_channel = np.all(b == b[:, :, :1, :1], axis=(2, 3)).all()
        if f_channel and not b_channel:
            return ("the forward drops whole channels (one decision per (n, c)) but the backward's "
                    "pattern varies within channels: an element mask used for channel dropout")
        if b_channel and not f_channel:
            return ("the backward drops whole channels but the forward drops single elements: "
                    "a channel mask used for element dropout")
    agree = float(np.mean(f == b))
    return (f"no simple relation (they agree on {100 * agree:.0f}% of elements, as two independent "
            "draws would): a mask from another draw, such as another seed, a stale mask from an earlier "
            "call, or a name rebound after the backward was defined")


def worst_element(pass_: Pass, probe: int) -> str:
    """How many elements fail for `probe`, and the worst one's a and n."""
    r = pass_.ratios()[probe]
    i = int(np.argmax(r))
    bad = int(np.sum(r > 1.0))
    return (f"{bad}/{r.size} elements out of tolerance; worst at flat index {i}: "
            f"a = {pass_.analytical[probe, i]:.6g}, n = {pass_.numerical[probe, i]:.6g}")


def wrong_branch(b, f, wrong, big, x, rel) -> str:
    """Describe a backward whose slope is off by one constant factor on part of
    the elements only (a piecewise derivative with one wrong branch); '' if not."""
    suspect = wrong & big
    if not np.any(suspect) or suspect.sum() < 2 or np.all(wrong):
        return ""
    ratio = b[suspect] / f[suspect]
    k = float(np.median(ratio))
    if k == 0 or not np.all(np.abs(ratio - k) <= 10 * rel * abs(k)):
        return ""
    inside, outside = x[wrong], x[~wrong]
    if np.all(inside < 0) and np.all(outside >= 0):
        region = "exactly the elements with x < 0"
    elif np.all(inside > 0) and np.all(outside <= 0):
        region = "exactly the elements with x > 0"
    else:
        region = f"elements with x from {float(inside.min()):.4g} to {float(inside.max()):.4g}"
    return (f"the backward's slope is {k:.4g} times the forward's on {int(wrong.sum())}/{wrong.size} elements "
            f"({region}) and agrees on the rest: one branch of the derivative has the wrong factor")

