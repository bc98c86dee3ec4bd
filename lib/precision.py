"""Where a finite-difference step goes wrong in floating point (notebook 06).

A central difference estimates a derivative as

    n = (L(x + h) - L(x - h)) / (2h)

and has two error sources that pull in opposite directions:

* truncation: the Taylor terms the formula drops, relative size ~ h^2 f'''/(6 f');
  it vanishes for a function that is linear in x (dropout is);
* rounding: L(x +/- h) are known only to about eps_dtype * |L|, and the two
  stored inputs x +/- h lie on the dtype's grid, so the step actually taken is
  not 2h. Relative size ~ eps_dtype / h.

On log-log axes the sum of the two is a V whose floor sits near h ~ cbrt(eps_dtype).

The functions here follow the original checker exactly: each perturbed value is
computed in x's dtype as `x[i] + dtype(eps)`, each loss is a float64 sum, and the
difference is divided by either the nominal 2*eps or the realised step
`float(x_plus) - float(x_minus)` (exact: both are values of x's dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lib import _checks
from lib.gradcheck import default_step
from lib.replica import original_check_gradient, replay_original_test

DTYPES = ("float16", "float32", "float64")
DIVISIONS = ("nominal", "realised")


def stored_perturbation(x, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The values the original checker stores for x + eps and x - eps.

    Args:
        x: floating array (float16/32/64), any shape.
        eps: the nominal half-step, a Python float.

    Returns:
        (plus, minus): arrays of x's shape and dtype, x + dtype(eps) and
        x - dtype(eps) each rounded once to x's dtype.
    """
    x = _checks.float_array(x, "x")
    step = x.dtype.type(_checks.positive_step(eps))
    return x + step, x - step


def realised_step(x, eps: float) -> np.ndarray:
    """Width float(x + eps) - float(x - eps) of the step as stored; float64, x's shape."""
    plus, minus = stored_perturbation(x, eps)
    return plus.astype(np.float64) - minus.astype(np.float64)


def step_ratio(x, eps: float) -> np.ndarray:
    """Realised step / nominal 2*eps, float64, x's shape.

    For a linear function this is exactly the factor by which dividing by the
    nominal step inflates the numerical gradient (before output rounding).
    """
    return realised_step(x, eps) / (2.0 * eps)


def spacing(values) -> np.ndarray:
    """Distance from |v| to the next larger value of v's dtype (np.spacing of |v|), v's dtype."""
    values = np.asarray(values)
    return np.spacing(np.abs(values))


def binade(values) -> tuple[np.ndarray, np.ndarray]:
    """Bounds [2^k, 2^(k+1)) of the power-of-two interval holding each |v|; float64, v's shape.

    Inside one binade a dtype's grid is evenly spaced; zero gets (0, 0).
    """
    v = np.abs(np.asarray(values, dtype=np.float64))
    _, exponent = np.frexp(v)  # v = m * 2**exponent with 0.5 <= m < 1
    low = np.where(v > 0, np.ldexp(1.0, exponent - 1), 0.0)
    return low, 2.0 * low


def step_anatomy(values: Sequence[float], eps: float, dtype) -> dict[str, np.ndarray]:
    """Element by element: how the original checker's step lands on the dtype's grid.

    Args:
        values: input values (n,), converted to `dtype` first, as the test does.
        eps: nominal half-step.
        dtype: "float16", "float32" or "float64".

    Returns:
        dict of (n,) arrays:
        x, plus, minus          the stored values (float64 copies, exact);
        spacing_plus/minus      grid spacing at the stored x+eps / x-eps;
        grid_steps_plus/minus   eps measured in those spacings (fractional: what
                                was asked) ...
        stored_steps_plus/minus ... and the whole number of spacings actually moved;
        realised                float(plus) - float(minus);
        ratio                   realised / (2 * eps).
    """
    dt = _checks.dtype_from_name(dtype)
    x = np.asarray(values, dtype=np.float64).astype(dt)
    plus, minus = stored_perturbation(x, eps)
    sp_plus, sp_minus = spacing(plus).astype(np.float64), spacing(minus).astype(np.float64)
    x64, plus64, minus64 = (a.astype(np.float64) for a in (x, plus, minus))
    realised = plus64 - minus64
    return {
        "x": x64,
        "plus": plus64,
        "minus": minus64,
        "spacing_plus": sp_plus,
        "spacing_minus": sp_minus,
        "grid_steps_plus": eps / sp_plus,
        "grid_steps_minus": eps / sp_minus,
        "stored_steps_plus": (plus64 - x64) / sp_plus,
        "stored_steps_minus": (x64 - minus64) / sp_minus,
        "realised": realised,
        "ratio": realised / (2.0 * eps),
    }


def ratio_scan(xs, eps: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Step error |realised / nominal - 1| for many inputs, with its worst-case envelope.

    Args:
        xs: (k,) input values, converted to `dtype`.
        eps: nominal half-step.
        dtype: dtype name.

    Returns:
        (error, envelope), both (k,) float64. The envelope
        (spacing(x+eps) + spacing(x-eps)) / (4 eps) + |dtype(eps) - eps| / eps
        bounds the error: each stored value is off by at most half a spacing,
        and eps itself is first rounded to the dtype.
    """
    dt = _checks.dtype_from_name(dtype)
    x = np.asarray(xs, dtype=np.float64).astype(dt)
    plus, minus = stored_perturbation(x, eps)
    error = np.abs(step_ratio(x, eps) - 1.0)
    eps_rounding = abs(float(dt.type(eps)) - eps) / eps
    envelope = (spacing(plus).astype(np.float64) + spacing(minus).astype(np.float64)) / (4.0 * eps) + eps_rounding
    return error, envelope


def central_difference(forward: Callable, x, grad_output, eps: float, *,
                       divide_by: str = "nominal") -> tuple[np.ndarray, np.ndarray]:
    """The original checker's numerical gradient for any forward (x is never modified).

    Runs `lib.replica.original_check_gradient` on a private copy of x (the
    failure-era loop: x_i +- eps computed in float64 and rounded to x's dtype,
    each loss summed in float64 in index order, the quotient stored in x's dtype).

    Args:
        forward: forward(x) -> array of grad_output's shape, computed in x's dtype.
        x: floating array (n,) in the dtype under test.
        grad_output: array of forward(x)'s shape; the loss is sum(forward(x) * grad_output).
        eps: nominal half-step.
        divide_by: "nominal" (2 * eps) or "realised" (the stored step). A realised
            step of zero (x + eps rounds to x) gives NaN, a nominal one gives 0.

    Returns:
        (numerical, width): float64 arrays of x's shape, the gradient and the divisor used.
    """
    x = _checks.float_array(x, "x")
    _checks.choice(divide_by, "divide_by", DIVISIONS)
    eps = _checks.positive_step(eps)
    g = np.asarray(grad_output, dtype=x.dtype)
    result = original_check_gradient(forward, lambda grad, x_in: np.zeros_like(x_in), x.copy(), g, eps=eps,
                                     divide_by=divide_by, restore_input=True)
    return result.numerical, result.step


def relative_error(analytical, numerical) -> np.ndarray:
    """|a - n| / max(|a|, |n|) element by element, float64; 0 where both are 0, NaN kept."""
    a = np.asarray(analytical, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    scale = np.maximum(np.abs(a), np.abs(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(a - n) / scale
    err[(a == n) & (scale == 0)] = 0.0
    return err


def function_error_vs_step(forward: Callable, derivative: Callable, values: Sequence[float], steps,
                           dtype, *, divide_by: str = "nominal") -> np.ndarray:
    """Worst relative gradient error of an elementwise function for each step.

    Args:
        forward: elementwise f, called on arrays of `dtype` (e.g. np.tanh).
        derivative: exact f' evaluated in float64 (e.g. lambda x: 1 - np.tanh(x)**2).
        values: (n,) input values, stored in `dtype` first.
        steps: (k,) nominal half-steps.
        dtype: dtype name.
        divide_by: "nominal" or "realised".

    Returns:
        (k,) float64: max over elements of relative_error(f'(x), numerical);
        NaN where some realised step is zero (the difference is undefined).
    """
    dt = _checks.dtype_from_name(dtype)
    x = np.asarray(values, dtype=np.float64).astype(dt)
    exact = derivative(x.astype(np.float64))
    ones = np.ones(x.shape)
    errors = np.empty(len(steps))
    for k, h in enumerate(np.asarray(steps, dtype=np.float64)):
        numerical, _ = central_difference(forward, x, ones, float(h), divide_by=divide_by)
        errors[k] = np.max(relative_error(exact, numerical))
    return errors


def replica_error_vs_step(steps, *, divide_by: str = "nominal", **switches) -> np.ndarray:
    """Worst relative gradient error of the replica test for each step.

    Runs lib.replica.replay_original_test(eps=h, divide_by=divide_by, **switches)
    for each h in `steps` (k,) and returns (k,) float64 errors
    max_i |a_i - n_i| / max(|a_i|, |n_i|); NaN when a realised step is zero.
    """
    errors = np.empty(len(steps))
    for k, h in enumerate(np.asarray(steps, dtype=np.float64)):
        r = replay_original_test(eps=float(h), divide_by=divide_by, **switches).result
        errors[k] = np.max(relative_error(r.analytical, r.numerical))
    return errors


def default_steps(dtypes: Sequence[str] = DTYPES, scale: float = 1.0) -> dict[str, float]:
    """The dtype-aware half-step of lib.gradcheck, cbrt(eps_dtype) * max(1, |x|), for |x| = scale."""
    return {d: float(default_step(np.array([scale], dtype=_checks.dtype_from_name(d)))[0]) for d in dtypes}


def best_step(steps, errors) -> tuple[float, float]:
    """(step, error) at the bottom of an error-vs-step curve (NaNs and zeros ignored)."""
    errors = np.asarray(errors, dtype=np.float64)
    usable = np.where(errors > 0, errors, np.inf)
    k = int(np.argmin(usable))
    return float(np.asarray(steps)[k]), float(errors[k])


def mark_steps(ax, steps: Mapping[str, float], colors: Mapping[str, str] | None = None,
               label: str = "default step") -> None:
    """Draw one dash-dot vertical line per entry (e.g. each dtype's default step) and refresh the legend."""
    for name, value in steps.items():
        ax.axvline(value, color=(colors or {}).get(name, "grey"), ls="-.", lw=1, alpha=0.8,
                   label=f"{label} {name} = {value:.2g}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def slope_guide(ax, x0: float, y0: float, slope: float, decades: float, text: str) -> None:
    """A short grey reference line of the given log-log slope starting at (x0, y0)."""
    xs = np.array([x0, x0 * 10.0**decades])
    ys = y0 * (xs / x0) ** slope
    ax.loglog(xs, ys, color="grey", lw=2, alpha=0.6)
    ax.text(xs[1], ys[1], f" {text}", color="dimgrey", fontsize=8, va="center")
