"""Chain-rule tools for notebooks 02 (the chain rule for dropout) and 05 (H3, the backward's formula).

Three kinds of pieces:

* checking a hand-derived gradient: `compare` / `comparison_table` print one
  aligned row per intermediate (exact, close, max difference), and
  `numerical_jacobian` builds the float64 reference J[i, j] = d out_i / d x_j;
* measuring rounding: `unit_roundoff`, `rounding_bound`, `relative_error`,
  `ulp_distance`;
* backward variants to hold against lib's `dropout_backward`: the closed form
  written two ways, the original library's order of operations, and a few
  deliberately wrong formulas (`PLANTED_BUGS`) that show what a comparison can
  and cannot catch.

Plus two plots specific to these notebooks: `plot_relative_errors` (errors on a
log axis against rounding levels and a pass/fail band) and
`plot_channel_jacobian` (a dropout2d Jacobian with its channel blocks outlined).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.patches import Rectangle

from lib import _checks
from lib.gradcheck import default_step
from lib.workbook.plots import FAIL_COLOR, NEUTRAL_COLOR, PASS_COLOR, plot_jacobian

#: "close" in a comparison table: |ours - reference| <= CLOSE_ATOL + CLOSE_RTOL * |reference|.
#: Central differences in float64 with steps near 1e-5 are good to about 1e-11 relative;
#: a wrong chain-rule step is wrong by a sizeable fraction. These sit far from both.
CLOSE_RTOL = 1e-6
CLOSE_ATOL = 1e-9

#: Relative error allowed for the float64 numerical reference itself (its finite-difference
#: error is about 1e-11 for dropout at the default step; notebook 05 measures it).
REFERENCE_RTOL = 1e-9


# ---------------------------------------------------------------------------
# Comparing a hand-derived gradient with a reference
# ---------------------------------------------------------------------------

def _as_float64(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a real numeric array; got dtype {array.dtype}")
    # + 0.0 turns -0.0 into +0.0, so that the sign of a zero never decides "exact".
    return array.astype(np.float64) + 0.0


@dataclass(frozen=True)
class Comparison:
    """One row of a comparison table.

    Attributes:
        name: the intermediate's name, e.g. "dx".
        exact: bit for bit equal after upcasting both to float64 (+0.0 and -0.0 count as equal).
        close: every element within atol + rtol * |reference|.
        max_diff: max |ours - reference| (float64; 0.0 for empty arrays).
        rtol, atol: the tolerances behind `close`.
    """

    name: str
    exact: bool
    close: bool
    max_diff: float
    rtol: float
    atol: float

    def row(self, width: int = 12) -> str:
        return f"{self.name:<{width}} {self.exact!s:>6} {self.close!s:>6} {self.max_diff:>13.3e}"


def compare(name: str, ours, reference, *, rtol: float = CLOSE_RTOL, atol: float = CLOSE_ATOL) -> Comparison:
    """Compare a hand-derived gradient `ours` with a `reference` of the same shape.

    Args:
        name: label for the row.
        ours, reference: real arrays (any float dtype, or scalars) of one shape.
        rtol, atol: `close` means |ours - reference| <= atol + rtol * |reference| everywhere.

    Returns:
        Comparison (exact, close, max |difference|).
    """
    a = _as_float64(ours, "ours")
    b = _as_float64(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"{name}: ours has shape {a.shape} but the reference has shape {b.shape}")
    rtol = _checks.non_negative(rtol, "rtol")
    atol = _checks.non_negative(atol, "atol")
    exact = bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
        close = bool(np.all(diff <= atol + rtol * np.abs(b)))
    max_diff = float(np.max(diff)) if diff.size else 0.0
    return Comparison(name, exact, close, max_diff, rtol, atol)


def comparison_table(rows: Sequence[Comparison]) -> str:
    """Aligned text: a header that states the tolerance, then one row per Comparison.

    All rows must share one (rtol, atol), so that the header tells the truth.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("comparison_table needs at least one row")
    tolerances = {(r.rtol, r.atol) for r in rows}
    if len(tolerances) > 1:
        raise ValueError(f"rows use different tolerances {sorted(tolerances)}; print them as separate tables")
    width = max(12, *(len(r.name) for r in rows))
    rtol, atol = rows[0].rtol, rows[0].atol
    lines = [
        f"close: |ours - reference| <= {atol:g} + {rtol:g} * |reference|",
        f"{'name':<{width}} {'exact':>6} {'close':>6} {'max |diff|':>13}",
    ]
    lines.extend(r.row(width) for r in rows)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The float64 reference
# ---------------------------------------------------------------------------

def numerical_jacobian(forward: Callable[[np.ndarray], np.ndarray], x, eps: float | None = None) -> np.ndarray:
    """Central-difference Jacobian of `forward` at `x`, computed in float64.

    Args:
        forward: forward(z) -> array; called with float64 arrays of x's shape, 2 * x.size + 1
            times. It must be deterministic (a dropout forward needs a fixed seed or mask).
        x: real array of any shape and float dtype; upcast to float64 (a copy), never modified.
        eps: half-step. None: cbrt(float64 eps) * max(1, |x_j|) per element (about 6e-6 near 1).

    Returns:
        float64 array of shape (n_out, n_in) = (forward(x).size, x.size): column j is
        (forward(x + h e_j) - forward(x - h e_j)).ravel() / (realised step), where the realised
        step is the float64 difference of the two perturbed values actually stored.
    """
    x64 = np.array(x, dtype=np.float64)  # always a copy
    if not np.all(np.isfinite(x64)):
        raise ValueError("x must be finite")
    half = default_step(x64) if eps is None else np.full(x64.shape, _checks.positive_step(eps))
    n_out = np.asarray(forward(x64.copy())).size
    jacobian = np.empty((n_out, x64.size), dtype=np.float64)
    flat, flat_half = x64.reshape(-1), half.reshape(-1)
    for j in range(x64.size):
        original = flat[j]
        plus, minus = original + flat_half[j], original - flat_half[j]
        width = plus - minus
        if width == 0.0:
            raise ValueError(f"eps={flat_half[j]:g} is too small at index {j} (x={original:g}): x+eps == x-eps")
        try:
            flat[j] = plus
            out_plus = np.array(forward(x64), dtype=np.float64)  # copy: forward may return a view
            flat[j] = minus
            out_minus = np.array(forward(x64), dtype=np.float64)
        finally:
            flat[j] = original
        if out_plus.size != n_out or out_minus.size != n_out:
            raise ValueError(f"forward returned {out_plus.size} values on a perturbed input but {n_out} on x")
        jacobian[:, j] = (out_plus - out_minus).reshape(-1) / width
    return jacobian


def probe_gradient(shape, seed) -> np.ndarray:
    """A random upstream gradient that every float dtype holds exactly.

    Magnitudes are uniform in [0.5, 2] with random signs, then rounded to float16, so the
    values are exact in float16, float32 and float64 alike and never subnormal (where
    relative rounding is no longer bounded by the unit roundoff).

    Args:
        shape: output shape.
        seed: anything np.random.default_rng accepts (an int, or a list such as [42, 5]).

    Returns:
        float64 array of `shape`.
    """
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.5, 2.0, shape)
    sign = rng.choice(np.array([-1.0, 1.0]), shape)
    return (magnitude * sign).astype(np.float16).astype(np.float64)


# ---------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------

def unit_roundoff(dtype) -> float:
    """u = eps / 2: the largest relative error of one correctly rounded operation (normal range)."""
    return float(np.finfo(_checks.dtype_from_name(dtype)).eps) / 2.0


def rounding_bound(dtype) -> float:
    """Largest relative error a correct dropout backward may show against the float64 reference.

    The backward rounds twice in `dtype`: 1/(1-p) is rounded to the dtype, and so is the
    product with grad_output (multiplying by a 0/1 mask is exact). Two roundings give at
    most 2u (+ u**2); REFERENCE_RTOL covers the reference's own finite-difference error.
    """
    u = unit_roundoff(dtype)
    return 2.0 * u + u * u + REFERENCE_RTOL


def relative_error(values, reference) -> np.ndarray:
    """|values - reference| / |reference| element by element, float64.

    Where the reference is exactly 0 (a dropped element), the error is 0 if `values` is
    also 0 and inf otherwise: a dropped element must get exactly no gradient.
    """
    a = _as_float64(values, "values")
    r = _as_float64(reference, "reference")
    if a.shape != r.shape:
        raise ValueError(f"values has shape {a.shape} but reference has shape {r.shape}")
    diff = np.abs(a - r)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = diff / np.abs(r)
    error[(r == 0) & (diff == 0)] = 0.0
    error[(r == 0) & (diff != 0)] = np.inf
    return error


_UINT_OF = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def ulp_distance(a, b) -> np.ndarray:
    """How many representable values of the common dtype lie between a and b (0 when equal).

    Args:
        a, b: arrays of one float dtype (float16, float32 or float64) and one shape.
            +0.0 and -0.0 are 0 apart. NaN gives a meaningless number.

    Returns:
        uint64 array of the shape of a.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in _UINT_OF:
        raise TypeError(f"a and b must share one float dtype (float16/32/64); got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}")
    bits = 8 * a.dtype.itemsize
    sign_bit = np.uint64(1) << np.uint64(bits - 1)

    def split(v):
        raw = v.view(_UINT_OF[v.dtype]).astype(np.uint64)
        return raw & sign_bit, raw & ~sign_bit  # sign, magnitude (ordered like the values)

    sign_a, mag_a = split(a)
    sign_b, mag_b = split(b)
    same_sign = (sign_a == sign_b) | (mag_a == 0) | (mag_b == 0)
    apart = np.where(mag_a >= mag_b, mag_a - mag_b, mag_b - mag_a)
    return np.where(same_sign, apart, mag_a + mag_b).astype(np.uint64)


# ---------------------------------------------------------------------------
# Backward variants
# ---------------------------------------------------------------------------

def _grad_mask(grad_output, mask):
    grad = _checks.float_array(grad_output, "grad_output")
    mask = np.asarray(mask)
    if mask.shape != grad.shape:
        raise ValueError(f"mask must have grad_output's shape {grad.shape}; got {mask.shape}")
    return grad, mask.astype(grad.dtype)


def closed_form_backward(grad_output, mask, p, *, divide: bool = False) -> np.ndarray:
    """grad * mask / (1 - p), evaluated in grad_output's dtype.

    divide=False (the form the code writes): multiply by 1/(1-p) rounded once to the dtype.
    divide=True: round (1 - p) to the dtype and divide by it. Same formula, other roundings:
    the two may differ in the last bit.

    Args:
        grad_output: float array, shape S. mask: 0/1 array of shape S. p: drop probability.

    Returns:
        array of shape S and grad_output's dtype.
    """
    grad, mask = _grad_mask(grad_output, mask)
    p = _checks.drop_probability(p)
    if divide:
        return grad * mask / grad.dtype.type(1.0 - p)
    return grad * mask * grad.dtype.type(1.0 / (1.0 - p))


def original_order_backward(grad_output, mask, p) -> np.ndarray:
    """The original library's dropout_backward, step for step:

        masked_grad = multiply(grad_output, mask)
        scale = 1.0 / (1.0 - p)                      # a 64-bit float
        scale_tensor = full_like(grad_output, scale) # rounded to the dtype
        return multiply(masked_grad, scale_tensor)

    Returns an array of grad_output's shape and dtype.
    """
    grad, mask = _grad_mask(grad_output, mask)
    p = _checks.drop_probability(p)
    masked_grad = np.multiply(grad, mask)
    scale = 1.0 / (1.0 - p)
    scale_tensor = np.full_like(grad, scale)
    return np.multiply(masked_grad, scale_tensor)


def _scale(grad, p):
    return grad.dtype.type(1.0 / (1.0 - p))


def _forgets_scale(grad_output, mask, p):
    grad, mask = _grad_mask(grad_output, mask)
    return grad * mask


def _scales_by_one_over_p(grad_output, mask, p):
    grad, mask = _grad_mask(grad_output, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        return grad * mask / grad.dtype.type(p)


def _inverted_mask(grad_output, mask, p):
    grad, mask = _grad_mask(grad_output, mask)
    return grad * (1 - mask) * _scale(grad, p)


def _ignores_grad_output(grad_output, mask, p):
    grad, mask = _grad_mask(grad_output, mask)
    return mask * _scale(grad, p)


def _reverses_grad_output(grad_output, mask, p):
    grad, mask = _grad_mask(grad_output, mask)
    return grad.reshape(-1)[::-1].reshape(grad.shape) * mask * _scale(grad, p)


#: Deliberately wrong backwards, name -> f(grad_output, mask, p), each returning grad_output's
#: shape and dtype. A comparison that cannot tell one of these from the right formula (at the
#: parameters used) has no power against that mistake.
PLANTED_BUGS: dict[str, Callable] = {
    "forgets the 1/(1-p) scale": _forgets_scale,
    "scales by 1/p": _scales_by_one_over_p,
    "uses the inverted mask": _inverted_mask,
    "ignores grad_output": _ignores_grad_output,
    "reverses grad_output": _reverses_grad_output,
}


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

def plot_relative_errors(ax, errors: Mapping[str, float], *, bounds: Mapping[str, float] | None = None,
                         levels: Sequence[tuple[float, str]] = (), fail_above: tuple[float, str] | None = None,
                         colors: Mapping[str, str] | None = None, title: str | None = None) -> None:
    """Bars of relative errors on a log axis, against rounding levels and a pass/fail band.

    Args:
        errors: bar label -> relative error (>= 0; 0 is drawn as a short grey "exact" bar,
            inf or NaN as a hatched bar up to the top of the axis marked "not finite").
        bounds: bar label -> an allowed error, drawn as a dashed segment across that bar.
        levels: (value, label) horizontal reference lines, e.g. a dtype's unit roundoff.
        fail_above: (value, label): errors above value fail a check; the band is shaded red.
        colors: bar label -> colour (default: green).
    """
    labels = list(errors)
    values = np.array([float(errors[k]) for k in labels], dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    markers = [v for v, _ in levels] + ([fail_above[0]] if fail_above else [])
    markers += [float(bounds[k]) for k in labels if bounds and k in bounds]
    low = min([*finite, *markers]) if (finite.size or markers) else 1e-16
    high = max([*finite, *markers]) if (finite.size or markers) else 1.0
    floor, top = low / 30.0, high * 30.0
    index = np.arange(len(labels))
    heights = np.where(~np.isfinite(values), top, np.where(values > 0, values, floor))
    bar_colors = [(colors or {}).get(k, PASS_COLOR) if np.isfinite(v) and v > 0 else NEUTRAL_COLOR
                  for k, v in zip(labels, values, strict=True)]
    bars = ax.bar(index, heights - floor, bottom=floor, color=bar_colors, width=0.6)
    for i, (bar, v) in enumerate(zip(bars, values, strict=True)):
        if not np.isfinite(v):
            bar.set_hatch("//")
            text = "not finite"
        else:
            text = "exact" if v == 0 else f"{v:.2g}"
        bound = float(bounds[labels[i]]) if bounds and labels[i] in bounds else None
        if bound is not None and v > 0 and np.isfinite(v) and v <= bound < 20 * v:
            # a dashed bound just above the bar would hide under the label: write it inside the bar
            ax.text(i, heights[i] / 1.4, text, ha="center", va="top", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85})
        else:
            ax.text(i, heights[i] * 1.25, text, ha="center", va="bottom", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85})
    bounded = [i for i, k in enumerate(labels) if bounds and k in bounds]
    for i in bounded:
        ax.hlines(bounds[labels[i]], i - 0.4, i + 0.4, colors="black", linestyles="--", lw=1.2,
                  label="rounding bound of that bar" if i == bounded[0] else None)
    styles = [":", "-.", (0, (1, 3))]
    for n, (value, label) in enumerate(levels):
        ax.axhline(value, color="#555555", ls=styles[n % len(styles)], lw=1, label=label)
    if fail_above:
        value, label = fail_above
        ax.axhline(value, color=FAIL_COLOR, lw=1.2, label=label)
        ax.axhspan(value, top * 10, color=FAIL_COLOR, alpha=0.08, lw=0)
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, top * 10)
    ax.set_xticks(index, labels=labels, fontsize=8)
    ax.set(ylabel="max relative error (dimensionless)", title=title or "")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_channel_jacobian(ax, jacobian, block: int, *, title: str = "dropout2d Jacobian") -> np.ndarray:
    """Draw a dropout2d Jacobian with each channel's diagonal block outlined and labelled.

    Args:
        jacobian: (n, n) array, inputs flattened in NCHW order, so each (sample, channel)
            owns `block` = H * W consecutive rows and columns.
        block: H * W.

    Returns:
        (n // block,) float64: the value on the diagonal of each block (its first entry).
    """
    jacobian = np.asarray(jacobian, dtype=float)
    n = jacobian.shape[0]
    block = _checks.positive_int(block, "block")
    if jacobian.shape != (n, n) or n % block:
        raise ValueError(f"jacobian must be square with a side divisible by block={block}; got {jacobian.shape}")
    plot_jacobian(ax, jacobian, title=title)
    values = np.array([jacobian[k * block, k * block] for k in range(n // block)])
    for k, value in enumerate(values):
        start = k * block - 0.5
        ax.add_patch(Rectangle((start, start), block, block, fill=False, edgecolor="black", lw=0.8))
        if n > 20 and block > 1:  # plot_jacobian labels every entry only for small matrices
            # in the block's empty lower-left corner, below its diagonal
            ax.text(start + 0.15, start + block - 0.15, f"{value:.3g}", ha="left", va="bottom", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85})
    return values
